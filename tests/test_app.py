"""The HTTP surface in process: routing, methods, the envelope, error codes and headers."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from eventapi.errors import StoreUnavailable
from eventapi.http.app import EventApi
from eventapi.http.asgi import Scope
from eventapi.http.responses import Response, response
from eventapi.settings import Settings
from eventapi.store.memory import MemoryStore
from eventapi.wiring import Worker
from tests.support.asgi_client import Lifespan, call
from tests.support.feeds import SampleFeed
from tests.support.waiting import wait_for
from tests.support.workers import worker


class BrokenStore(MemoryStore):
    """A store whose reads fail as an unreachable Redis does."""

    async def read_days(self, first_day: int | None, last_day: int | None) -> object:  # type: ignore[override]
        raise StoreUnavailable("redis unavailable: ConnectionError: connection refused")


@pytest.fixture
async def service() -> Worker:
    built = worker(feed=SampleFeed("response_1.xml"))
    await built.refresher.refresh_once(force=True)
    return built


async def test_search_returns_the_spec_envelope_ordered_by_start(service: Worker) -> None:
    """GET /search answers {"data": {"events": [...]}, "error": null}, events by start then id."""
    reply = await call(service.app, "/search")
    assert reply.status == 200
    body = reply.json()
    assert body["error"] is None
    starts = [(e["start_date"], e["start_time"], e["id"]) for e in body["data"]["events"]]
    assert starts == sorted(starts) and len(starts) == 3
    assert set(body["data"]["events"][0]) == {
        "id",
        "title",
        "start_date",
        "start_time",
        "end_date",
        "end_time",
        "min_price",
        "max_price",
    }


async def test_events_path_gives_the_same_answer_as_search(service: Worker) -> None:
    """/events is the same handler as /search."""
    query = b"starts_at=2021-06-01&ends_at=2021-07-01"
    assert (await call(service.app, "/events", query)).body == (
        await call(service.app, "/search", query)
    ).body


async def test_range_is_containment_inclusive_at_both_ends(service: Worker) -> None:
    """An event starting exactly at starts_at and ending exactly at ends_at is in; one second less is out."""
    exact = await call(service.app, "/search", b"starts_at=2021-06-30T21:00:00&ends_at=2021-06-30T22:00:00")
    assert [e["title"] for e in exact.json()["data"]["events"]] == ["Camela en concierto"]
    tight = await call(service.app, "/search", b"starts_at=2021-06-30T21:00:00&ends_at=2021-06-30T21:59:59")
    assert tight.json()["data"]["events"] == []
    late = await call(service.app, "/search", b"starts_at=2021-06-30T21:00:01")
    assert "Camela en concierto" not in [e["title"] for e in late.json()["data"]["events"]]


async def test_every_response_has_content_type_and_length(service: Worker) -> None:
    """Both headers on 200, 400, 404 and 405, and the length matches the body."""
    for path, query, method in [
        ("/search", b"", "GET"),
        ("/search", b"starts_at=x", "GET"),
        ("/nope", b"", "GET"),
        ("/search", b"", "POST"),
    ]:
        reply = await call(service.app, path, query, method)
        assert reply.headers["content-type"] == "application/json"
        assert int(reply.headers["content-length"]) == len(reply.body)
        assert reply.messages == 2


async def test_search_is_cacheable_for_the_configured_age(service: Worker) -> None:
    """cache-control lets a CDN or nginx keep the answer for EVENTAPI_CACHE_MAX_AGE seconds."""
    assert (await call(service.app, "/search")).headers["cache-control"] == "public, max-age=5"


async def test_bad_query_gets_400_in_the_error_envelope(service: Worker) -> None:
    """A value that does not parse: 400 invalid_parameter naming the parameter and the value."""
    reply = await call(service.app, "/search", b"ends_at=2021-02-30")
    assert reply.status == 400
    body = reply.json()
    assert body["data"] is None and body["error"]["code"] == "invalid_parameter"
    assert "ends_at" in body["error"]["message"] and "2021-02-30" in body["error"]["message"]


async def test_unknown_path_is_404_in_the_envelope(service: Worker) -> None:
    """A path the API does not have is a 404 in the same envelope as every other error."""
    reply = await call(service.app, "/searches")
    assert (reply.status, reply.json()["error"]["code"]) == (404, "not_found")


async def test_other_methods_get_405_with_allow(service: Worker) -> None:
    """POST, PUT, DELETE on a known path: 405 and an allow header listing GET and HEAD."""
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        reply = await call(service.app, "/search", method=method)
        assert (reply.status, reply.headers["allow"]) == (405, "GET, HEAD")
        assert reply.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/search", "/events", "/healthz", "/openapi.json", "/docs"])
async def test_head_gets_the_headers_of_get_without_a_body(service: Worker, path: str) -> None:
    """HEAD works wherever GET does: GET's status and headers (content-length included), no body."""
    get = await call(service.app, path)
    head = await call(service.app, path, method="HEAD")
    assert (head.status, head.body) == (get.status, b"") and get.body
    assert head.headers == get.headers


async def test_unreachable_store_gives_503_envelope() -> None:
    """When the store cannot be reached, the client gets 503 unavailable, not a hang or a 500."""
    service = worker(store=BrokenStore())
    reply = await call(service.app, "/search")
    assert (reply.status, reply.json()["error"]["code"]) == (503, "unavailable")


async def test_unexpected_error_is_500_with_a_generic_message_and_a_logged_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Internals stay in the log; the client sees a fixed message."""

    async def explode(scope: Scope) -> Response:
        raise KeyError("secret internal detail")

    async def nothing() -> None: ...

    app = EventApi({"/search": explode}, nothing, nothing)
    reply = await call(app, "/search")
    assert reply.status == 500
    assert reply.json()["error"] == {
        "code": "internal_error",
        "message": "Internal error: the failure has been logged.",
    }
    assert "secret internal detail" not in reply.body.decode()
    assert "secret internal detail" in caplog.text and "Traceback" in caplog.text


async def test_a_handler_may_answer_at_once_or_with_an_awaitable() -> None:
    """A plain function's finished response and a coroutine's are sent alike, and both are tallied."""
    ready = response(200, b'{"at":"once"}')

    def at_once(scope: Scope) -> Response:
        return ready

    async def awaited(scope: Scope) -> Response:
        return response(200, b'{"at":"later"}')

    async def nothing() -> None: ...

    tallied: list[tuple[str, int]] = []
    app = EventApi(
        {"/now": at_once, "/later": awaited}, nothing, nothing,
        observe=lambda route, status, seconds: tallied.append((route, status)),
    )  # fmt: skip
    now, later = await call(app, "/now"), await call(app, "/later")
    assert (now.status, now.body, later.status, later.body) == (200, b'{"at":"once"}', 200, b'{"at":"later"}')
    assert now.headers["content-length"] == str(len(now.body))
    assert tallied == [("/now", 200), ("/later", 200)]


async def test_failed_startup_is_reported_to_the_server() -> None:
    """Lifespan answers startup.failed with the reason, so the server fails loudly."""

    async def fail() -> None:
        raise RuntimeError("redis pool could not be created")

    async def nothing() -> None: ...

    answer = await Lifespan(EventApi({}, fail, nothing)).startup()
    assert answer["type"] == "lifespan.startup.failed"
    assert "redis pool could not be created" in answer["message"]


def task_names() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks()}


async def test_lifespan_starts_and_stops_the_refresher() -> None:
    """Start-up opens the store and starts the background task; shutdown cancels it cleanly."""
    service = worker(Settings(refresh_interval=3600), feed=SampleFeed("response_1.xml"))
    lifespan = Lifespan(service.app)
    assert (await lifespan.startup())["type"] == "lifespan.startup.complete"
    await wait_for(lambda: service.refresher.status.last_success_at, "the first refresh, run at once", 5)
    assert len((await call(service.app, "/search")).json()["data"]["events"]) == 3
    assert "eventapi-refresher" in task_names()
    assert (await lifespan.shutdown())["type"] == "lifespan.shutdown.complete"
    assert "eventapi-refresher" not in task_names() and service.tasks.deaths == {}  # cancelled, not died


async def test_websocket_scope_is_not_served() -> None:
    """Only http and lifespan scopes are handled; others get nothing sent."""
    sent: list[object] = []

    async def receive() -> dict[str, str]:
        return {"type": "websocket.connect"}

    async def send(message: object) -> None:
        sent.append(message)

    async def nothing() -> None: ...

    await EventApi({}, nothing, nothing)({"type": "websocket", "path": "/search"}, receive, send)
    assert sent == []


def test_error_envelope_is_valid_json_for_any_message() -> None:
    """Quotes and unicode in messages are escaped by orjson, never by string formatting."""
    from eventapi.errors import InvalidParameter
    from eventapi.http.responses import error_response

    _, _, raw = error_response(InvalidParameter('bad "value" ✓'))
    body = orjson.loads(raw)
    assert body["error"]["message"] == 'bad "value" ✓'
