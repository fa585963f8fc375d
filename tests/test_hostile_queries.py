"""Hostile queries and request lines get a clear 4xx fast, never a 5xx or a hang (in process, over HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventapi.events import Event, event_id
from eventapi.sim import SimServer
from eventapi.wiring import Worker
from tests.support.asgi_client import Reply, call
from tests.support.service_process import ServiceProcess
from tests.support.workers import worker

ANSWER_SECONDS = 2.0  # every hostile request is answered within this, or the test fails
ALL_EVENTS = b"starts_at=2021-01-01&ends_at=2022-12-31"


def seed_events() -> list[Event]:
    """Three online plans in July 2021, enough for a normal search to have something to return."""
    start = datetime(2021, 7, 1, 20, 0)
    return [
        Event(event_id("1", str(n)), "1", str(n), f"plan {n}", start + timedelta(days=n),
              start + timedelta(days=n, hours=2), 10.0, 20.0, True)
        for n in range(3)
    ]  # fmt: skip


async def seeded_service() -> Worker:
    """The in-process app on an embedded store holding the seed events, with no background tasks."""
    service = worker()
    outcome = await service.store.merge(seed_events())
    service.watcher.observe(outcome.version)
    return service


@pytest.fixture
async def service() -> Worker:
    return await seeded_service()


async def get(service: Worker, path: str, query: bytes) -> Reply:
    """One GET through the ASGI app, failing the test if it takes longer than ANSWER_SECONDS."""
    async with asyncio.timeout(ANSWER_SECONDS):
        return await call(service.app, path, query)


# --- in process: what the app itself answers ------------------------------------------------------

HOSTILE_QUERIES = {
    "100 KB value": b"starts_at=" + b"1" * 100_000,
    "100 KB name": b"s" * 100_000 + b"=2021-01-01",
    "10,000 repeated parameters": b"&".join([b"starts_at=2021-01-01"] * 10_000),
    "10,000 unknown parameters": b"&".join([b"a"] * 10_000),
    "invalid UTF-8 %ff%fe": b"starts_at=%ff%fe",
    "raw non-UTF-8 bytes": b"starts_at=\xff\xfe2021-01-01",
    "NUL %00": b"starts_at=2021-01-01%00",
    "double-encoded %252B": b"starts_at=2021-07-21T19:32:28%252B02:00",
    "overlong UTF-8 %c0%af": b"starts_at=%c0%af",
    "encoded surrogate %ed%a0%80": b"starts_at=%ed%a0%80",
    "truncated escape %2": b"starts_at=2021-01-01%2",
    "empty value": b"starts_at=",
    "name without value": b"starts_at",
    "semicolon separators": b"starts_at=2021-01-01;ends_at=2021-02-01",
    "fragment passed through": b"starts_at=2021-01-01#frag",
    "encoded name with NUL": b"starts_at%00=2021-01-01",
    "Arabic-Indic digits": "starts_at=\u0662\u0660\u0662\u0661-\u0660\u0661-\u0660\u0661".encode(),
    "inverted range": b"starts_at=2022-01-01&ends_at=2021-01-01",
}


@pytest.mark.parametrize("query", HOSTILE_QUERIES.values(), ids=HOSTILE_QUERIES.keys())
async def test_hostile_query_gets_the_invalid_parameter_envelope(service: Worker, query: bytes) -> None:
    """Each hostile query string is a 400 envelope with a bounded message, and searches go on after it."""
    reply = await get(service, "/search", query)
    assert reply.status == 400 and reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["data"] is None and body["error"]["code"] == "invalid_parameter"
    assert len(body["error"]["message"]) < 500  # a 100 KB value is not echoed back
    normal = await get(service, "/search", ALL_EVENTS)
    assert normal.status == 200 and len(normal.json()["data"]["events"]) == 3


@pytest.mark.parametrize(
    "query",
    [b"starts_at=2021-07-01T00:00:00%2b02:00", b"starts_at=2021-07-01T00:00:00%2B02:00",
     b"starts_at=2021-07-01T00:00:00+02:00", b"starts_at=2021-06-30T22:00:00Z", b"starts_at=2021-07-01"],
    ids=["lowercase %2b", "%2B", "raw +", "Z", "date"],
)  # fmt: skip
async def test_plus_in_an_offset_may_come_raw_or_percent_encoded_in_any_case(
    service: Worker, query: bytes
) -> None:
    """%2b, %2B and a raw '+' all mean the offset's sign: the same bound as the date in Madrid."""
    reply = await get(service, "/search", query)
    assert reply.status == 200 and len(reply.json()["data"]["events"]) == 3


@pytest.mark.parametrize("path", ["/search%2F", "/search/", "/search%00", "/%2e%2e/search"])
async def test_odd_paths_are_a_not_found_envelope(service: Worker, path: str) -> None:
    """An encoded slash, a trailing slash, NUL or dot segments are a 404 envelope, not a search or a 500."""
    reply = await get(service, path, ALL_EVENTS)
    assert reply.status == 404 and reply.json()["error"]["code"] == "not_found"


def test_any_query_bytes_get_200_or_400_with_a_json_envelope() -> None:
    """Any query bytes get 200 or 400 in the envelope: never 5xx, never an exception."""
    with asyncio.Runner() as runner:
        service = runner.run(seeded_service())

        @settings(max_examples=300, deadline=None, derandomize=True)
        @given(
            st.binary(max_size=200)
            | st.lists(
                st.sampled_from([b"starts_at=", b"ends_at=", b"2021-07-01", b"T10:00:00", b"%2B02:00", b"&"]),
                max_size=8,
            ).map(b"".join)
        )
        def check(query: bytes) -> None:
            reply = runner.run(get(service, "/search", query))
            assert reply.status in (200, 400)
            body = reply.json()
            assert (body["error"] is None) == (reply.status == 200)

        check()


# --- over a real socket: what Granian and the app answer together ---------------------------------


@dataclass(frozen=True)
class RawReply:
    status: int
    body: bytes
    seconds: float


def send_raw(port: int, request: bytes) -> RawReply:
    """Send raw bytes on a new connection and read the whole answer; a silent server fails the test."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_SECONDS) as sock:
        # The server may answer and close before it has read an oversize request whole.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"no complete answer within {ANSWER_SECONDS} s (got {received[:200]!r})")
    status_line, _, rest = received.partition(b"\r\n")
    match = re.fullmatch(rb"HTTP/1\.[01] (\d{3}) .*", status_line)
    assert match is not None, f"not an HTTP answer: {received[:200]!r}"
    return RawReply(int(match[1]), rest.partition(b"\r\n\r\n")[2], time.monotonic() - started)


def request_line(target: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One real `eventapi serve` (Granian, one worker, embedded store) fed by the simulator."""
    with SimServer() as sim:
        log_path = tmp_path_factory.mktemp("hostile") / "service.log"
        with ServiceProcess({"EVENTAPI_PROVIDER_URL": sim.url}, log_path) as service:
            yield service


# (raw request, statuses allowed, JSON error code from the app or None when Granian answers itself)
OVER_HTTP = {
    # Granian refuses request-targets over ~64 KB with 414 and an empty body, before the app.
    "100 KB query string": (request_line(b"/search?starts_at=" + b"1" * 100_000), {414}, None),
    "10,000 repeated parameters (200 KB)": (
        request_line(b"/search?" + b"&".join([b"starts_at=2021-01-01"] * 10_000)), {414}, None),
    "10,000 unknown parameters (20 KB)": (
        request_line(b"/search?" + b"&".join([b"a"] * 10_000)), {400}, "invalid_parameter"),
    "64 KB request line": (request_line(b"/search?starts_at=2021-01-01&x=" + b"a" * 65_536), {414}, None),
    "1 MB request line": (request_line(b"/search?x=" + b"a" * 1_000_000), {414, 431}, None),
    "just under the URI limit (65,516 bytes)": (
        request_line(b"/search?starts_at=" + b"1" * 65_516), {400}, "invalid_parameter"),
    "invalid UTF-8 %ff%fe": (request_line(b"/search?starts_at=%ff%fe"), {400}, "invalid_parameter"),
    # Granian refuses raw bytes outside the URI grammar with its own 400 and an empty body.
    "raw non-UTF-8 bytes": (request_line(b"/search?starts_at=\xff\xfe2021"), {400}, None),
    "raw control character": (request_line(b"/search?starts_at=2021-01-01\x01"), {400}, None),
    "NUL %00": (request_line(b"/search?starts_at=2021-01-01%00"), {400}, "invalid_parameter"),
    "double-encoded %252B": (
        request_line(b"/search?starts_at=2021-07-21T19:32:28%252B02:00"), {400}, "invalid_parameter"),
    "lowercase %2b": (request_line(b"/search?starts_at=2021-07-21T19:32:28%2b02:00"), {200}, None),
    "overlong UTF-8 %c0%af": (request_line(b"/search?starts_at=%c0%af"), {400}, "invalid_parameter"),
    "empty starts_at=": (request_line(b"/search?starts_at="), {400}, "invalid_parameter"),
    "semicolon separators": (
        request_line(b"/search?starts_at=2021-01-01;ends_at=2021-02-01"), {400}, "invalid_parameter"),
    # Granian drops a fragment from the request-target: the app sees starts_at=2021-01-01 alone.
    "fragment #frag": (request_line(b"/search?starts_at=2021-01-01#frag"), {200}, None),
    "encoded slash /search%2F": (request_line(b"/search%2F?starts_at=2021-01-01"), {404}, "not_found"),
}  # fmt: skip


@pytest.mark.parametrize(("request_bytes", "statuses", "code"), OVER_HTTP.values(), ids=OVER_HTTP.keys())
def test_hostile_request_over_http_gets_a_clear_answer_fast(
    served: ServiceProcess, request_bytes: bytes, statuses: set[int], code: str | None
) -> None:
    """A real server answers each hostile request as expected within 2 s, then serves searches."""
    reply = send_raw(served.port, request_bytes)
    assert reply.status in statuses and reply.seconds < ANSWER_SECONDS
    if code is not None:
        assert orjson.loads(reply.body)["error"]["code"] == code
    normal = send_raw(served.port, request_line(b"/search?" + ALL_EVENTS))
    assert normal.status == 200 and orjson.loads(normal.body)["error"] is None
