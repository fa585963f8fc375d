"""The OpenAPI document: valid OpenAPI 3.1, served at /openapi.json, and true of the running service.

Schemathesis generates requests from the document (positive data: values that fit the schemas) and
checks the real service's answers against it: statuses, content types, headers and bodies.
"""

from __future__ import annotations

import copy
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from eventapi.http.docs import ASSET_NAMES, INIT_NAME
from eventapi.http.openapi import OPENAPI_PATH, openapi_document
from eventapi.sim import SimServer
from tests.support.asgi_client import call
from tests.support.ports import free_port
from tests.support.service_process import ServiceProcess
from tests.support.workers import worker

SEARCH_PATHS = ("/search", "/events")
OPERATIONAL_PATHS = ("/healthz", "/readyz", "/status", "/metrics", OPENAPI_PATH, "/docs", "/docs/{asset}")
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CHECKS = [not_a_server_error, *CONFORMANCE]
# Bounded and derandomized, so a run is quick and the same every time (~200 requests in all).
# Bounded for every test run; a larger run: SCHEMATHESIS_EXAMPLES=1000 pytest tests/test_openapi.py
SEARCH_EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "50"))
OPERATIONAL_EXAMPLES = 5


def _documented_code(response_name: str) -> str:
    response = openapi_document()["components"]["responses"][response_name]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    code: str = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["const"]
    return code


def test_document_is_valid_openapi_3_1() -> None:
    """openapi-spec-validator accepts the document as OpenAPI 3.1, schemas and $refs included."""
    document = openapi_document()
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_schemathesis_runs_every_documented_path() -> None:
    """The schemathesis runs below cover every documented path, GET and HEAD alike."""
    document = openapi_document()
    assert set(document["paths"]) == {*SEARCH_PATHS, *OPERATIONAL_PATHS}
    assert all(set(item) == {"get", "head"} for item in document["paths"].values())
    for path in SEARCH_PATHS:
        assert set(document["paths"][path]["get"]["responses"]) == {"200", "304", "400", "500", "503"}
    assert "EVENTAPI_TIMEZONE" in document["components"]["parameters"]["StartsAt"]["description"]
    assert document["servers"] == [{"url": "/", "description": "The server that serves this document."}]


def test_document_is_built_once() -> None:
    """The document is a constant of the process: every call returns the same object."""
    assert openapi_document() is openapi_document()


async def test_document_is_served_at_openapi_json() -> None:
    """GET /openapi.json answers the document as JSON, so Swagger UI and clients can load it."""
    service = worker()
    reply = await call(service.app, OPENAPI_PATH)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert int(reply.headers["content-length"]) == len(reply.body)
    assert reply.json() == openapi_document()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The real service (Granian, embedded store) fed by the provider simulator's sample feeds."""
    log_path = tmp_path_factory.mktemp("openapi") / "service.log"
    with SimServer() as sim, ServiceProcess({"EVENTAPI_PROVIDER_URL": sim.url}, log_path) as running:
        running.wait_until(
            lambda: len(running.get("/search")[1]["data"]["events"]) > 0, "the sample events are served"
        )
        yield running


def _run_schemathesis(
    service: ServiceProcess,
    path: str,
    method: str,
    examples: int,
    path_parameters: dict[str, Any] | None = None,
    checks: list[Any] = CHECKS,
) -> None:
    # schemathesis rewrites what it loads: it gets a copy of the module's one document.
    operation = schemathesis.openapi.from_dict(copy.deepcopy(openapi_document()))[path][method]

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(path_parameters=path_parameters))
    def answers_as_documented(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=service.base_url, checks=checks)

    answers_as_documented()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path", SEARCH_PATHS)
def test_searches_answer_as_documented(service: ServiceProcess, path: str, method: str) -> None:
    """Generated searches get documented statuses, content types, headers and bodies, and never a 5xx."""
    _run_schemathesis(service, path, method, SEARCH_EXAMPLES)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path", OPERATIONAL_PATHS)
def test_operational_endpoints_answer_as_documented(service: ServiceProcess, path: str, method: str) -> None:
    """Health, readiness, status, metrics, this document and Swagger UI answer as documented."""
    _run_schemathesis(service, path, method, OPERATIONAL_EXAMPLES)


@pytest.mark.parametrize("asset", sorted({*ASSET_NAMES, INIT_NAME}))
def test_swagger_ui_files_answer_as_documented(service: ServiceProcess, asset: str) -> None:
    """Each file the docs page loads is served with a documented content type and headers."""
    _run_schemathesis(service, "/docs/{asset}", "GET", 1, {"asset": asset})


def test_not_ready_answer_is_as_documented(tmp_path: Path) -> None:
    """With the provider unreachable and nothing stored, /readyz answers the documented 503."""
    unreachable = f"http://127.0.0.1:{free_port()}/api/events"
    with ServiceProcess({"EVENTAPI_PROVIDER_URL": unreachable}, tmp_path / "service.log") as service:
        assert service.get("/readyz")[0] == 503
        # 503 is this answer's documented status here, not a server error.
        _run_schemathesis(service, "/readyz", "GET", 1, checks=CONFORMANCE)
        _run_schemathesis(service, "/search", "GET", 10)


def test_documented_400_for_a_value_outside_the_pattern(service: ServiceProcess) -> None:
    """A value the pattern refuses is refused by the service too, with the documented 400 envelope."""
    status, body = service.get("/search?starts_at=21-07-2021")
    assert status == 400
    assert body["data"] is None and body["error"]["code"] == _documented_code("BadRequest")


def test_documented_404_and_405(service: ServiceProcess) -> None:
    """An unknown path and another method answer as the NotFound and MethodNotAllowed responses say."""
    status, body = service.get("/nowhere")
    assert status == 404 and body["error"]["code"] == _documented_code("NotFound")
    request = urllib.request.Request(service.base_url + "/search", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=5)
    assert answer.value.code == 405
    allow = openapi_document()["components"]["headers"]["Allow"]["schema"]["const"]
    assert answer.value.headers["allow"] == allow
    assert orjson.loads(answer.value.read())["error"]["code"] == _documented_code("MethodNotAllowed")
