"""One in-process ASGI request through `service.app`: LRU hits, 304s and misses, against reference apps.

The caller is as lean as an ASGI caller gets: scopes are built before timing, `receive` returns one
constant message and `send` keeps the last message of each type. Requests run in batches, one
`run_until_complete` of the session's uvloop loop per batch: entering the loop costs about 25 µs on
uvloop (10 µs on asyncio), ten times a hit, so paid per request it would measure the harness. The
benchmark clock is perf_counter divided by the batch size, so every reported time is per request
(the mean of its batch). Every app in a group goes through the same caller with the same batch.

The store is seeded with a generated year of events (3,000 base plans, 2027). A miss must read the
store: each request of a miss benchmark has a range of its own, yet the same answer, because the
generated events start from 09:00 and end by 04:00 the next day, so moving starts_at within
00:00-09:00 of the first day and ends_at within 04:00-09:00 of the last day changes nothing else.
"""

from __future__ import annotations

import asyncio
import time
import zoneinfo
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from eventapi.http.asgi import Message, Receive, Scope, Send
from eventapi.refresh.work import ParsedFeed
from eventapi.refresh.xml_feed import parse
from eventapi.settings import Settings
from eventapi.sim.feeds import generate_feed
from eventapi.store.memory import MemoryStore
from eventapi.store.redis import RedisStore
from eventapi.wiring import Worker
from tests.support.redis_server import RedisServer, key_prefix
from tests.support.workers import worker

MADRID = zoneinfo.ZoneInfo("Europe/Madrid")
SEED = 2027
STORES = ("memory", "redis")

ASGIApp = Callable[[Scope, Receive, Send], Any]
REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


def per_request_clock(requests: int) -> Callable[[], float]:
    """perf_counter in units of `requests` seconds: a batch of that many requests times as one."""

    def clock() -> float:
        return time.perf_counter() / requests

    clock.__name__ = clock.__qualname__ = f"perf_counter_per_{requests}_requests"
    return clock


# Batch sizes: the loop's entry (about 25 µs) spread to a few hundredths of the request's own cost.
HIT_BATCH, MISS_BATCH, SPAN_BATCH = 1000, 100, 10
WARMUP_ROUNDS = 2
HIT_GROUP = "asgi hit: a 1-month range from the LRU, and reference apps"
MISS_GROUP = "asgi miss: a new 1-month range each request, read from the store"
SPAN_GROUP = "asgi miss: 1-year against 100-year range, same events (calendar span)"
MAX_SPAN_RATIO = 1.5

# (first day, last day): starts_at at 00:00 + s of the first (s < 9 h), ends_at at 04:00 + s of the last.
MONTH = (datetime(2027, 3, 1), datetime(2027, 4, 1, 4))
YEAR = (datetime(2027, 1, 1), datetime(2028, 1, 1, 4))
CENTURY = (datetime(1978, 1, 1), datetime(2078, 1, 1, 4))
SPANS = {"1 year": YEAR, "100 years": CENTURY}
LAST_SHIFT = 9 * 3600 * 5 * 3600 - 1


# What curl sends: a hit scans these for if-none-match.
CLIENT_HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"curl/8.5.0"), (b"accept", b"*/*")]


def search_scope(query: bytes, headers: list[tuple[bytes, bytes]] = CLIENT_HEADERS) -> Scope:
    """A GET /search scope as a server builds it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/search",
        "raw_path": b"/search",
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def range_query(span: tuple[datetime, datetime], shift: int = 0) -> bytes:
    """The query of `span` moved by `shift` seconds where no event can be: each shift, one more range."""
    start_shift, end_shift = shift % (9 * 3600), shift // (9 * 3600)
    assert end_shift < 5 * 3600, "out of distinct ranges with the same answer"
    starts_at = span[0] + timedelta(seconds=start_shift)
    ends_at = span[1] + timedelta(seconds=end_shift)
    return f"starts_at={starts_at.isoformat()}&ends_at={ends_at.isoformat()}".encode()


class Caller:
    """Runs batches of requests through one ASGI app on the loop; keeps the last messages it was sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop, app: ASGIApp) -> None:
        self.sent: dict[str, Message] = {}
        sent = self.sent

        async def receive() -> Message:
            return REQUEST

        async def send(message: Message) -> None:
            sent[message["type"]] = message

        async def serve(scopes: list[Scope]) -> None:
            for scope in scopes:
                await app(scope, receive, send)

        self._loop = loop
        self._serve = serve

    def batch(self, scopes: list[Scope]) -> None:
        self._loop.run_until_complete(self._serve(scopes))

    def one(self, scope: Scope) -> tuple[int, dict[bytes, bytes], bytes]:
        """Status, headers and body of one request."""
        self.batch([scope])
        start, body = self.sent["http.response.start"], self.sent["http.response.body"]
        return start["status"], dict(start["headers"]), body["body"]


def time_batches(
    benchmark: BenchmarkFixture, caller: Caller, batches: Iterator[list[Scope]], rounds: int
) -> int:
    """Time `rounds` batches, after WARMUP_ROUNDS more; return how many requests ran in all.

    Handing a batch over is not timed.
    """
    handed: list[int] = []

    def next_batch() -> tuple[tuple[list[Scope]], dict[str, object]]:
        batch = next(batches)
        handed.append(len(batch))
        return (batch,), {}

    benchmark.pedantic(caller.batch, setup=next_batch, rounds=rounds, warmup_rounds=WARMUP_ROUNDS)
    return sum(handed)


def time_batches_counting_misses(
    benchmark: BenchmarkFixture, service: Worker, caller: Caller, batches: Iterator[list[Scope]], rounds: int
) -> tuple[int, int]:
    """time_batches, and how many requests it ran and how many of them missed the service's LRU."""
    misses = service.search.cache.misses
    requests = time_batches(benchmark, caller, batches, rounds)
    return requests, service.search.cache.misses - misses


def same_batch(scope: Scope, size: int) -> Iterator[list[Scope]]:
    """Batches of one scope, again and again: the same request each time."""
    batch = [scope] * size
    while True:
        yield batch


def distinct_batches(span: tuple[datetime, datetime], size: int) -> Iterator[list[Scope]]:
    """Batches of scopes for `span`, no two with the same range, all with the same answer."""
    shift = 1  # shift 0 is the range the hit benchmarks ask for
    while True:
        yield [search_scope(range_query(span, shift + offset)) for offset in range(size)]
        shift += size


# --- the service, seeded, on each store -------------------------------------------------------


@pytest.fixture(scope="module")
def year_feed() -> ParsedFeed:
    """3,000 base plans with 5 zones each over 2027: about 2,600 served events, 7 a day."""
    return parse(generate_feed(3_000, 5, seed=SEED), MADRID)


@pytest.fixture(scope="module")
def services(
    bench_loop: asyncio.AbstractEventLoop, redis_server: RedisServer, year_feed: ParsedFeed
) -> Iterator[dict[str, Worker]]:
    """The service on the embedded store and on Redis, its store opened and seeded; no lifespan, so
    no background task (the refresher, which would fetch from its feed) runs between benchmark calls."""
    run = bench_loop.run_until_complete
    stores = {"memory": MemoryStore(), "redis": RedisStore(redis_server.url, key_prefix())}
    built = {}
    for name, store in stores.items():
        service = worker(Settings(), store)
        run(store.open())
        outcome = run(service.store.merge(year_feed.events))
        run(service.watcher.poll_once())
        assert outcome.changed > 2_000 and service.watcher.current == outcome.generation
        built[name] = service
    yield built
    for store in stores.values():
        run(store.close())


@pytest.fixture(params=STORES)
def service(request: pytest.FixtureRequest, services: dict[str, Worker]) -> Worker:
    """The seeded service on each store in turn."""
    return services[request.param]


@pytest.fixture(scope="module")
def month_answer(bench_loop: asyncio.AbstractEventLoop, services: dict[str, Worker]) -> bytes:
    """The body of the month's answer (the same from both stores)."""
    bodies = {
        Caller(bench_loop, services[name].app).one(search_scope(range_query(MONTH)))[2] for name in STORES
    }
    assert len(bodies) == 1
    return bodies.pop()


def event_count(body: bytes) -> int:
    return len(orjson.loads(body)["data"]["events"])


# --- hits, 304s and the reference apps ---------------------------------------------------------


async def empty_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The harness floor: an app that answers nothing."""


def constant_app(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> ASGIApp:
    """A raw ASGI app that sends one prebuilt response: two sends of messages built once."""
    response_start: Message = {"type": "http.response.start", "status": status, "headers": headers}
    response_body: Message = {"type": "http.response.body", "body": body}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send(response_start)
            await send(response_body)

    return app


@pytest.mark.benchmark(group=HIT_GROUP, timer=per_request_clock(HIT_BATCH))
def test_reference_constant_app(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    services: dict[str, Worker],
    month_answer: bytes,
) -> None:
    """The same-run reference: the service's own answer to the month, sent as a constant."""
    status, headers, body = Caller(bench_loop, services["memory"].app).one(search_scope(range_query(MONTH)))
    caller = Caller(bench_loop, constant_app(status, list(headers.items()), body))
    time_batches(benchmark, caller, same_batch(search_scope(range_query(MONTH)), HIT_BATCH), rounds=200)
    assert caller.one(search_scope(b""))[2] == month_answer
    benchmark.extra_info["requests_per_round"] = HIT_BATCH


@pytest.mark.benchmark(group=HIT_GROUP, timer=per_request_clock(HIT_BATCH))
def test_harness_floor(benchmark: BenchmarkFixture, bench_loop: asyncio.AbstractEventLoop) -> None:
    """What the caller itself costs per request: an app that returns at once."""
    caller = Caller(bench_loop, empty_app)
    time_batches(benchmark, caller, same_batch(search_scope(range_query(MONTH)), HIT_BATCH), rounds=200)
    assert not caller.sent
    benchmark.extra_info["requests_per_round"] = HIT_BATCH


@pytest.mark.benchmark(group=HIT_GROUP, timer=per_request_clock(HIT_BATCH))
def test_hit(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    service: Worker,
    month_answer: bytes,
) -> None:
    """The same month again: the memoized range, then the LRU's finished response; no store read."""
    caller, scope = Caller(bench_loop, service.app), search_scope(range_query(MONTH))
    caller.one(scope)  # in the LRU from here on, whatever ran before
    _, misses = time_batches_counting_misses(benchmark, service, caller, same_batch(scope, HIT_BATCH), 200)
    assert misses == 0
    status, _, body = caller.one(scope)
    assert (status, body) == (200, month_answer)
    benchmark.extra_info.update(requests_per_round=HIT_BATCH, events=event_count(month_answer))


@pytest.mark.benchmark(group=HIT_GROUP, timer=per_request_clock(HIT_BATCH))
def test_hit_with_request_id(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    services: dict[str, Worker],
    month_answer: bytes,
) -> None:
    """The same hit with an X-Request-ID (as nginx sends one): validated and echoed in a new header list."""
    service = services["memory"]
    headers = [*CLIENT_HEADERS, (b"x-request-id", b"0123456789abcdef0123456789abcdef")]
    caller, scope = Caller(bench_loop, service.app), search_scope(range_query(MONTH), headers)
    caller.one(scope)
    misses = service.search.cache.misses
    time_batches(benchmark, caller, same_batch(scope, HIT_BATCH), rounds=200)
    assert service.search.cache.misses == misses
    status, sent_headers, body = caller.one(scope)
    assert (status, body, sent_headers[b"x-request-id"]) == (200, month_answer, headers[-1][1])
    benchmark.extra_info["requests_per_round"] = HIT_BATCH


@pytest.mark.benchmark(group=HIT_GROUP, timer=per_request_clock(HIT_BATCH))
def test_revalidation_304(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    service: Worker,
) -> None:
    """If-None-Match with the current ETag of a cached range: a 304 without a body."""
    caller = Caller(bench_loop, service.app)
    etag = caller.one(search_scope(range_query(MONTH)))[1][b"etag"]
    scope = search_scope(range_query(MONTH), [*CLIENT_HEADERS, (b"if-none-match", etag)])
    _, misses = time_batches_counting_misses(benchmark, service, caller, same_batch(scope, HIT_BATCH), 200)
    assert misses == 0
    status, _, body = caller.one(scope)
    assert (status, body) == (304, b"")
    benchmark.extra_info["requests_per_round"] = HIT_BATCH


# --- misses ------------------------------------------------------------------------------------


@pytest.mark.benchmark(group=MISS_GROUP, timer=per_request_clock(MISS_BATCH))
def test_miss(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    service: Worker,
    month_answer: bytes,
) -> None:
    """A month never asked before: parse the query, read the store, assemble, cache."""
    caller, batches = Caller(bench_loop, service.app), distinct_batches(MONTH, MISS_BATCH)
    requests, misses = time_batches_counting_misses(benchmark, service, caller, batches, 60)
    assert misses == requests
    status, _, body = caller.one(next(batches)[0])
    assert (status, body) == (200, month_answer)
    benchmark.extra_info.update(requests_per_round=MISS_BATCH, events=event_count(month_answer))


@pytest.fixture(scope="module")
def span_medians() -> dict[tuple[str, str], float]:
    """Median time per request of the calendar-span benchmarks, by (store, span), as they finish."""
    return {}


@pytest.mark.benchmark(group=SPAN_GROUP, timer=per_request_clock(SPAN_BATCH))
@pytest.mark.parametrize(
    ("store", "span"),
    [(store, span) for store in ("redis", "memory") for span in SPANS],
)
def test_miss_calendar_span(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    services: dict[str, Worker],
    year_feed: ParsedFeed,
    span_medians: dict[tuple[str, str], float],
    store: str,
    span: str,
) -> None:
    """A 100-year range over a year of data costs what its events cost, not its days: at most 1.5x."""
    service = services[store]
    caller, batches = Caller(bench_loop, service.app), distinct_batches(SPANS[span], SPAN_BATCH)
    year_body = caller.one(search_scope(range_query(YEAR, LAST_SHIFT)))[2]
    assert caller.one(next(batches)[0])[2] == year_body  # the same events, whatever the span
    assert event_count(year_body) == len({event.id for event in year_feed.events if event.online})

    time_batches(benchmark, caller, batches, rounds=30)
    benchmark.extra_info.update(requests_per_round=SPAN_BATCH, events=event_count(year_body))
    if benchmark.stats is None:  # --benchmark-disable: nothing was timed
        return
    span_medians[store, span] = benchmark.stats.stats.median
    one_year = span_medians.get((store, "1 year"))
    if span == "100 years" and one_year is not None:
        ratio = span_medians[store, span] / one_year
        benchmark.extra_info["median_vs_1_year"] = round(ratio, 3)
        assert ratio <= MAX_SPAN_RATIO, f"{store}: 100-year range costs {ratio:.2f}x the 1-year range"
