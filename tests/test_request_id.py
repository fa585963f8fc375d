"""X-Request-ID in process: echoed when valid, replaced when not, never stored in a cached answer."""

from __future__ import annotations

import logging
import re

import pytest

from eventapi.http.request_id import MAX_LENGTH
from eventapi.settings import Settings
from eventapi.wiring import Worker
from tests.support.asgi_client import call
from tests.support.feeds import SampleFeed
from tests.support.workers import worker

RANGE = b"starts_at=2021-01-01&ends_at=2022-12-31"
RANDOM_ID = re.compile(r"[0-9a-f]{32}")


def with_id(request_id: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"api"), (b"x-request-id", request_id)]


@pytest.fixture
async def service() -> Worker:
    built = worker(Settings(access_log=True), feed=SampleFeed("response_1.xml"))
    await built.refresher.refresh_once(force=True)
    return built


@pytest.mark.parametrize(
    ("path", "query", "method"),
    [("/search", RANGE, "GET"), ("/search", RANGE, "HEAD"), ("/search", b"starts_at=soon", "GET"),
     ("/nowhere", b"", "GET"), ("/healthz", b"", "GET"), ("/search", RANGE, "POST")],
    ids=["search", "head", "400", "404", "healthz", "405"],
)  # fmt: skip
async def test_a_valid_request_id_is_echoed_on_every_kind_of_answer(
    service: Worker, path: str, query: bytes, method: str
) -> None:
    """Whatever the answer, the id the client (or nginx) sent comes back, so one id finds both sides."""
    reply = await call(service.app, path, query, method, with_id(b"abc-123_X.y"))
    assert reply.headers["x-request-id"] == "abc-123_X.y"


async def test_without_a_request_id_none_is_made_up(service: Worker) -> None:
    """No id sent, no header back: a request without one costs no id generation."""
    reply = await call(service.app, "/search", RANGE, headers=[(b"host", b"api")])
    assert reply.status == 200 and "x-request-id" not in reply.headers


@pytest.mark.parametrize(
    "sent",
    [b"", b"a" * (MAX_LENGTH + 1), b"with space", b'quote"d', b"new\nline", "caf\u00e9".encode()],
    ids=["empty", "too-long", "space", "quote", "newline", "non-ascii"],
)
async def test_an_invalid_request_id_is_replaced_by_a_random_one(service: Worker, sent: bytes) -> None:
    """Nothing a client sends reaches the logs or the answer unbounded: a fresh 32-hex id instead."""
    first = await call(service.app, "/search", RANGE, headers=with_id(sent))
    second = await call(service.app, "/search", RANGE, headers=with_id(sent))
    assert RANDOM_ID.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_the_longest_valid_request_id_is_kept() -> None:
    """The bound is inclusive: 128 characters pass as sent."""
    reply = await call(worker().app, "/healthz", headers=with_id(b"7" * MAX_LENGTH))
    assert reply.headers["x-request-id"] == "7" * MAX_LENGTH


async def test_a_cached_answer_carries_each_requests_own_id_and_keeps_none(service: Worker) -> None:
    """Cached answers are prebuilt and shared: the echo must never be written into them."""
    first = await call(service.app, "/search", RANGE, headers=with_id(b"first"))
    second = await call(service.app, "/search", RANGE, headers=with_id(b"second"))
    third = await call(service.app, "/search", RANGE, headers=[(b"host", b"api")])
    assert (first.headers["x-request-id"], second.headers["x-request-id"]) == ("first", "second")
    assert "x-request-id" not in third.headers
    assert first.body == second.body == third.body
    cached = service.search.cache.peek(service.search.range_key(RANGE))
    assert cached is not None and all(isinstance(field, int | str | bytes) for field in cached)  # no headers


async def test_the_access_log_line_carries_the_request_id(
    service: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    """With the access log on, the id the answer echoed is the one logged (the replacement, if any)."""
    with caplog.at_level(logging.INFO, logger="eventapi.access"):
        await call(service.app, "/search", RANGE, headers=with_id(b"trace-me-1"))
        replaced = await call(service.app, "/search", RANGE, headers=with_id(b"not valid"))
        await call(service.app, "/search", RANGE)
    logged = [getattr(record, "request_id", "missing") for record in caplog.records]
    assert logged == ["trace-me-1", replaced.headers["x-request-id"], None]
