"""Realistic search traffic for eventapi, every answer checked: status, envelope, events inside the range.

The mix (task weights): the marketplace's landing pages (a few popular ranges), random ranges across
years, open-ended queries (only `starts_at`, only `ends_at`, neither), revalidations with
`If-None-Match`, and a trickle of bad queries that must get 400. The generated feed spans 2027, so
random ranges are drawn from 2026 to 2028: some fall outside it and must come back empty.

Run it through `make load` (loadtest/run.py starts the stack and judges the thresholds), or by hand
against a running service:

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 50 -r 50 -t 30s

Checking costs the load generator CPU it would otherwise spend sending (on a 2-core box it shares the
cores with the server): every answer gets its status, content type and envelope checked; the events of
a 200 are range- and order-checked on `--check-sample` of the answers (1.0, every one, by default).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from locust import FastHttpUser, between, events, task
from locust.contrib.fasthttp import ResponseContextManager

PROVIDER_ZONE = ZoneInfo("Europe/Madrid")  # the service's EVENTAPI_TIMEZONE default
FEED_FIRST_DAY = date(2027, 1, 1)  # the simulator's generated feed: 365 days from here
ENVELOPE_HEAD = b'{"data":{"events":['
ENVELOPE_TAIL = b']},"error":null}'
OPEN_LOW = "0000-01-01T00:00:00"  # a naive bound below every event, for a missing starts_at
OPEN_HIGH = "9999-12-31T23:59:59"


@events.init_command_line_parser.add_listener
def _add_options(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument(
        "--check-sample",
        type=float,
        default=1.0,
        help="share of 200 answers whose events are parsed and range-checked (default 1.0: all)",
    )
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause of a user between requests, ms, uniform from 0 to twice it (default 0)",
    )


def wall_clock(value: str) -> str:
    """A query bound as the service reads it: naive Madrid wall-clock, as `YYYY-MM-DDTHH:MM:SS`."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(PROVIDER_ZONE).replace(tzinfo=None)
    return moment.isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Query:
    """One search: its path, its stats name, and its bounds as naive wall-clock strings."""

    path: str
    name: str
    low: str
    high: str

    @classmethod
    def of(cls, name: str, starts_at: str | None, ends_at: str | None) -> Query:
        params = [
            f"{key}={value}" for key, value in (("starts_at", starts_at), ("ends_at", ends_at)) if value
        ]
        low = OPEN_LOW if starts_at is None else wall_clock(starts_at)
        high = OPEN_HIGH if ends_at is None else wall_clock(ends_at)
        path = "/search" + ("?" + "&".join(params) if params else "")
        return cls(path.replace("+", "%2B"), name, low, high)


# The landing pages: this weekend, the next 7 days, this month, the summer, written as a front end
# would (dates, local date-times, UTC and offsets alike).
POPULAR = (
    Query.of("popular", "2027-03-05T16:00:00", "2027-03-07T23:59:59"),
    Query.of("popular", "2027-03-01", "2027-03-08"),
    Query.of("popular", "2027-03-01", "2027-03-31"),
    Query.of("popular", "2027-02-28T23:00:00Z", "2027-03-31T23:59:59+02:00"),
    Query.of("popular", "2027-06-21", "2027-06-27T23:59:59"),
)
POPULAR_WEIGHTS = (30, 25, 20, 15, 10)

BAD_QUERIES = (
    "/search?starts_at=tomorrow",
    "/search?starts_at=2027-02-30",
    "/search?ends_at=2027-13-01",
    "/search?start_at=2027-03-01",  # a typo is reported, not ignored
    "/search?starts_at=2027-03-01&starts_at=2027-04-01",
    "/search?starts_at=2027-04-01&ends_at=2027-03-01",
    "/events?starts_at=2027-03-01T25:00:00",
)


def random_bound(rng: random.Random, first: date, days: int) -> str:
    """A bound somewhere in `days` days from `first`, in one of the accepted forms."""
    moment = datetime.combine(first, datetime.min.time()) + timedelta(
        days=rng.randrange(days), seconds=rng.randrange(86_400)
    )
    match rng.randrange(4):
        case 0:
            return moment.date().isoformat()
        case 1:
            return moment.isoformat(timespec="seconds")
        case 2:
            return moment.isoformat(timespec="seconds") + "Z"
        case _:
            return moment.isoformat(timespec="seconds") + rng.choice(("+01:00", "+02:00", "-05:00"))


def random_range(rng: random.Random) -> Query:
    """A range starting anywhere from 2026 to 2028, lasting from an hour to 60 days."""
    starts_at = random_bound(rng, date(2026, 1, 1), 3 * 365)
    low = datetime.fromisoformat(wall_clock(starts_at))
    ends_at = (low + timedelta(hours=rng.randint(1, 60 * 24))).isoformat(timespec="seconds")
    return Query.of("random", starts_at, ends_at)


def open_ended(rng: random.Random) -> Query:
    """Only starts_at (late in the feed), only ends_at (early in it), or neither (the whole feed, rare)."""
    roll = rng.random()
    if roll < 0.45:
        return Query.of("open: starts_at only", random_bound(rng, FEED_FIRST_DAY + timedelta(300), 100), None)
    if roll < 0.9:
        return Query.of("open: ends_at only", None, random_bound(rng, FEED_FIRST_DAY - timedelta(30), 90))
    return Query.of("open: neither", None, None)


class Searcher(FastHttpUser):
    """A visitor of the marketplace: landing pages mostly, its own ranges, revalidations, a few typos."""

    def wait_time(self) -> float:
        think = self.environment.parsed_options.think_ms if self.environment.parsed_options else 0.0
        return between(0, 2 * think / 1000)(self) if think else 0.0

    def on_start(self) -> None:
        self.rng = random.Random()
        options = self.environment.parsed_options
        self.check_sample = options.check_sample if options else 1.0
        self.etags: dict[str, str] = {}  # path -> the tag of its last 200, as a browser keeps it

    @task(50)
    def landing_page(self) -> None:
        self.search(self.rng.choices(POPULAR, POPULAR_WEIGHTS)[0])

    @task(20)
    def own_range(self) -> None:
        self.search(random_range(self.rng))

    @task(10)
    def open_range(self) -> None:
        self.search(open_ended(self.rng))

    @task(18)
    def revalidate(self) -> None:
        query = self.rng.choices(POPULAR, POPULAR_WEIGHTS)[0]
        etag = self.etags.get(query.path)
        if etag is None:  # nothing to revalidate yet: the first visit of that page
            self.search(query)
            return
        headers = {"If-None-Match": etag}
        with self.client.get(query.path, headers=headers, name="revalidate", catch_response=True) as answer:
            if answer.status_code == 304:
                if answer.content:
                    answer.failure(f"304 with a body of {len(answer.content)} B")
                elif answer.headers.get("etag") not in (None, etag):
                    answer.failure(f"304 with another tag {answer.headers.get('etag')} than {etag}")
                else:
                    answer.success()
            elif answer.status_code == 200 and answer.headers.get("etag") != etag:
                self.check_events(answer, query)  # the store moved on: a new answer, a new tag
            else:
                answer.failure(f"{answer.status_code} to If-None-Match {etag}, not 304")

    @task(2)
    def bad_query(self) -> None:
        path = self.rng.choice(BAD_QUERIES)
        with self.client.get(path, name="bad query (400)", catch_response=True) as answer:
            if answer.status_code != 400:
                answer.failure(f"{answer.status_code}, not 400, for {path}")
                return
            try:
                body = orjson.loads(answer.content)
                ok = body["data"] is None and body["error"]["code"] == "invalid_parameter"
            except (orjson.JSONDecodeError, KeyError, TypeError):
                ok = False
            if ok:
                answer.success()
            else:
                answer.failure(f"not an invalid_parameter error envelope: {answer.content[:200]!r}")

    def search(self, query: Query) -> None:
        with self.client.get(query.path, name=query.name, catch_response=True) as answer:
            if answer.status_code != 200:
                answer.failure(f"{answer.status_code} for {query.path}: {answer.content[:200]!r}")
                return
            self.check_events(answer, query)
            if etag := answer.headers.get("etag"):
                self.etags[query.path] = etag

    def check_events(self, answer: ResponseContextManager, query: Query) -> None:
        """Envelope always; events inside [low, high] and in (start, id) order on a sample of answers."""
        body = answer.content
        if answer.headers.get("content-type", "").split(";")[0] != "application/json":
            answer.failure(f"content-type {answer.headers.get('content-type')}")
            return
        if not (body.startswith(ENVELOPE_HEAD) and body.endswith(ENVELOPE_TAIL)):
            answer.failure(f"not a data envelope: {body[:120]!r} … {body[-60:]!r}")
            return
        if self.check_sample < 1.0 and self.rng.random() >= self.check_sample:
            answer.success()
            return
        if problem := range_problem(body, query):
            answer.failure(f"{query.path}: {problem}")
        else:
            answer.success()


def range_problem(body: bytes, query: Query) -> str | None:
    """Why the answer's events are not all inside the query's range in order, or None when they are."""
    try:
        found = orjson.loads(body)["data"]["events"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return f"unreadable body ({exc})"
    low, high = query.low, query.high
    previous = ("", "")
    for event in found:
        start = event["start_date"] + "T" + event["start_time"]
        end = event["end_date"] + "T" + event["end_time"]
        if start < low or end > high:
            return f"event {event['id']} {start}..{end} outside {low}..{high}"
        if (start, event["id"]) < previous:
            return f"event {event['id']} out of order"
        previous = (start, event["id"])
    return None
