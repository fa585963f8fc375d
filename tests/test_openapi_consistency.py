"""The OpenAPI document agrees with the code: routes, error codes, /status fields, Swagger UI types.

The document is data edited by hand (eventapi/http/openapi.json): each test fails when something is
added on one side only.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from eventapi import errors
from eventapi.errors import PublicError
from eventapi.http.docs import ASSET_NAMES, ASSETS_PREFIX, INIT_NAME
from eventapi.http.openapi import openapi_document
from eventapi.http.responses import ERROR_STATUS
from tests.support.asgi_client import call
from tests.support.feeds import SampleFeed
from tests.support.workers import worker

# A prefix route ("/docs/") is documented as one path parameter under it ("/docs/{asset}").
TEMPLATED_PATH = re.compile(r"(?P<prefix>.*/)\{[^{}/]+\}")
# A row of the error table in the document's description: | 400 | `invalid_parameter` | ...
ERROR_TABLE_ROW = re.compile(r"^\| (?P<status>\d{3}) \| `(?P<code>[a-z_]+)` \|", re.MULTILINE)


def _resolve(item: dict[str, Any]) -> dict[str, Any]:
    """A `#/components/...` reference's target, or the item itself."""
    if "$ref" not in item:
        return item
    target: dict[str, Any] = openapi_document()
    for key in item["$ref"].removeprefix("#/").split("/"):
        target = target[key]
    return target


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    """The properties an object schema declares, its `allOf` parts and references included."""
    schema = _resolve(schema)
    found = dict(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        found.update(_properties(part))
    return found


def _field_differences(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Where a JSON value's keys and the schema's properties differ, down through nested objects."""
    declared = _properties(schema)
    if not declared:  # not an object with properties (a number, or a map such as skipped_by_kind)
        return []
    if not isinstance(value, dict):
        return [f"{where}: the schema declares properties, the body has {value!r}"]
    differences = [f"{where}.{key}: in the body only" for key in sorted(value.keys() - declared)]
    differences += [f"{where}.{key}: in the document only" for key in sorted(declared.keys() - value.keys())]
    for key in sorted(value.keys() & declared.keys()):
        differences += _field_differences(value[key], declared[key], f"{where}.{key}")
    return differences


def _error_code(response: dict[str, Any]) -> str | None:
    """The code an error response pins in the ErrorEnvelope; None for any other response."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    parts = schema.get("allOf", [])
    if not parts or parts[0] != {"$ref": "#/components/schemas/ErrorEnvelope"}:
        return None
    code: str = parts[1]["properties"]["error"]["properties"]["code"]["const"]
    return code


def _assets_path() -> str:
    (path,) = [
        path
        for path in openapi_document()["paths"]
        if (match := TEMPLATED_PATH.fullmatch(path)) and match["prefix"] == ASSETS_PREFIX
    ]
    return path


def test_every_route_is_documented_and_every_documented_path_is_served() -> None:
    """A route missing from the document is invisible to clients; a documented path nobody serves is a lie."""
    app = worker().app
    documented = set(openapi_document()["paths"])
    templated = {path for path in documented if "{" in path}
    prefixes = {match["prefix"] if (match := TEMPLATED_PATH.fullmatch(path)) else path for path in templated}
    assert set(app.routes) == documented - templated
    assert set(app.prefix_routes) == prefixes


def test_every_public_error_class_has_its_code_in_the_error_table() -> None:
    """A code outside the table is answered as a 500; a code in it that nothing raises is dead."""
    classes = [item for item in vars(errors).values() if isinstance(item, type)]
    codes = {error.code for error in classes if issubclass(error, PublicError)}
    assert codes == set(ERROR_STATUS)


def test_document_declares_the_error_tables_codes() -> None:
    """Clients switch on `error.code`: the document's enum and error responses are the table's codes."""
    components = openapi_document()["components"]
    enum = components["schemas"]["Error"]["properties"]["code"]["enum"]
    assert sorted(enum) == sorted(ERROR_STATUS)
    response_codes = {_error_code(response) for response in components["responses"].values()} - {None}
    assert response_codes == set(ERROR_STATUS)


def test_document_gives_each_error_code_the_tables_status() -> None:
    """The error responses under each status, and the description's table, say what the service answers."""
    statuses = {
        (code, int(status))
        for item in openapi_document()["paths"].values()
        for operation in item.values()
        for status, answer in operation["responses"].items()
        if (code := _error_code(_resolve(answer))) is not None
    }
    assert statuses and statuses <= set(ERROR_STATUS.items())
    description = openapi_document()["info"]["description"]
    table = {(row["code"], int(row["status"])) for row in ERROR_TABLE_ROW.finditer(description)}
    assert table == set(ERROR_STATUS.items())


@pytest.mark.parametrize("refreshed", [False, True], ids=["before-a-refresh", "after-a-refresh"])
async def test_status_body_has_the_fields_the_document_declares(refreshed: bool) -> None:
    """Operators read /status by the Status schema: every field on one side is on the other, nested too."""
    service = worker(feed=SampleFeed("response_1.xml"))
    if refreshed:  # the fleet's refresh then comes from the store, as in production
        await service.refresher.refresh_once(force=True)
    body = (await call(service.app, "/status")).json()
    assert (body["refresh"]["last_success_at"] is not None) == refreshed
    schema = openapi_document()["components"]["schemas"]["Status"]
    assert _field_differences(body, schema, "status") == []


async def test_swagger_ui_files_are_served_with_the_documented_types() -> None:
    """Each content type the assets path declares is served, and every file served is of a declared type."""
    app = worker().app
    served = set()
    for name in ["", INIT_NAME, *sorted(ASSET_NAMES)]:  # "" is the page itself, at /docs/
        reply = await call(app, ASSETS_PREFIX + name)
        assert reply.status == 200, name
        served.add(reply.headers["content-type"])
    documented = openapi_document()["paths"][_assets_path()]["get"]["responses"]["200"]["content"]
    assert served == set(documented)
