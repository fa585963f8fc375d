"""Swagger UI at /docs: served by the service itself, and "Try it out" works in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from eventapi.http.app import EventApi
from eventapi.http.docs import ASSETS_PREFIX, DOCS_PATH, docs_asset, docs_page
from eventapi.sim import SimServer
from tests.support.asgi_client import call
from tests.support.service_process import ServiceProcess

SAMPLE_TITLES = {"Camela en concierto", "Pantomima Full", "Los Morancos"}
SAMPLE_RANGE = "/search?starts_at=2021-01-01&ends_at=2022-12-31"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Quiet, reproducible Chromium: nothing of its own goes out (updates, sync, QUIC probes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def _nothing() -> None:
    return None


def docs_app() -> EventApi:
    """The docs routes alone, wired as the service wires them."""
    return EventApi({DOCS_PATH: docs_page}, _nothing, _nothing, prefix_routes={ASSETS_PREFIX: docs_asset})


def chromium_path() -> str | None:
    """Debian's chromium, if installed (.ci/run installs it)."""
    found = shutil.which("chromium")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    return found


# --- The page and its assets, in process -----------------------------------------------------


async def test_page_loads_only_what_the_service_serves() -> None:
    """Every script, stylesheet and icon of the page is under /docs/, so it works offline."""
    reply = await call(docs_app(), DOCS_PATH)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    references = re.findall(rb'(?:src|href)="([^"]*)"', reply.body)
    assert references and all(ref.startswith(b"/docs/") for ref in references)
    assert b"<script>" not in reply.body  # inline scripts are refused by the page's own policy
    assert "script-src 'self'" in reply.headers["content-security-policy"]
    for ref in references:
        assert (await call(docs_app(), ref.decode())).status == 200


async def test_init_script_points_swagger_ui_at_the_openapi_document() -> None:
    """The start-up script loads /openapi.json and turns off the external validator badge."""
    reply = await call(docs_app(), "/docs/init.js")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/javascript")
    assert b'url: "/openapi.json"' in reply.body and b"validatorUrl: null" in reply.body


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("swagger-ui.css", "text/css"),
        ("swagger-ui-bundle.js", "text/javascript"),
        ("favicon-32x32.png", "image/png"),
    ],
)
async def test_asset_has_its_type_and_a_day_of_caching(name: str, content_type: str) -> None:
    """Assets are long-lived files: the right type, and cacheable for a day."""
    reply = await call(docs_app(), ASSETS_PREFIX + name)
    assert reply.status == 200 and reply.headers["content-type"].startswith(content_type)
    assert reply.headers["cache-control"] == "public, max-age=86400"
    assert int(reply.headers["content-length"]) == len(reply.body) > 0


async def test_head_on_an_asset_gets_the_headers_without_the_body() -> None:
    """HEAD works on assets as on every other path."""
    get = await call(docs_app(), "/docs/swagger-ui.css")
    head = await call(docs_app(), "/docs/swagger-ui.css", method="HEAD")
    assert head.status == 200 and head.body == b"" and head.headers == get.headers


@pytest.mark.parametrize(
    "path",
    [
        "/docs/../pyproject.toml",
        "/docs/../../eventapi/docs.py",
        "/docs/..",
        "/docs//etc/passwd",
        "/docs/swagger-ui/swagger-ui.css",
        "/docs/LICENSE",  # shipped beside the assets, but not one of the served types
        "/docs/nope.js",
        "/docs/swagger-ui.css/",
    ],
)
async def test_only_allow_listed_files_are_served(path: str) -> None:
    """No path under /docs/ reaches a file outside the allow-list: 404 in the error envelope."""
    reply = await call(docs_app(), path)
    assert reply.status == 404 and reply.json()["error"]["code"] == "not_found"


# --- The page in a real browser against the real service -------------------------------------


def titles(service: ServiceProcess) -> set[str]:
    status, body = service.get(SAMPLE_RANGE)
    return {event["title"] for event in body["data"]["events"]} if status == 200 else set()


def is_local(url: str) -> bool:
    """A URL of this machine, or one that needs no network at all (data:, blob:)."""
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob") or parts.hostname in LOCAL_HOSTS


def try_search_in_swagger_ui(base_url: str, chromium: str, screenshot: Path) -> dict[str, Any]:
    """Open /docs, run "Try it out" on GET /search, and report what the page showed and requested."""
    from playwright.sync_api import Route, sync_playwright

    requested: list[str] = []
    console_errors: list[str] = []

    def only_local(route: Route) -> None:
        # Recorded in the test's assertion; aborted here so the test itself never reaches out.
        if is_local(route.request.url):
            route.continue_()
        else:
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            page.route("**/*", only_local)

            page.goto(base_url + DOCS_PATH)
            search = page.locator(".opblock.opblock-get").filter(
                has=page.locator('.opblock-summary-path[data-path="/search"]')
            )
            search.locator(".opblock-summary-control").click()
            search.locator("button.try-out__btn").click()
            search.locator('tr[data-param-name="starts_at"] input').fill("2021-01-01")
            search.locator('tr[data-param-name="ends_at"] input').fill("2022-12-31")
            search.locator("button.execute").click()
            live = search.locator(".live-responses-table .response")
            status = live.locator(".response-col_status").first.inner_text()
            body = live.locator(".response-col_description").first.inner_text()
            page.screenshot(path=screenshot, full_page=True)  # kept in the test's tmp_path, to look at
        finally:
            browser.close()
    return {"status": status.strip(), "body": body, "requested": requested, "errors": console_errors}


def test_try_it_out_on_search_returns_the_events(sim: SimServer, tmp_path: Path) -> None:
    """In headless Chromium, /docs shows GET /search and its "Try it out" gets 200 with the events."""
    chromium = chromium_path()
    if chromium is None:
        pytest.skip("no Chromium installed (apt-get install -y chromium; .ci/run installs it)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra has it)")
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_REFRESH_INTERVAL": "0.2"}
    with ServiceProcess(settings, tmp_path / "service.log") as service:
        service.wait_until(lambda: titles(service) >= SAMPLE_TITLES, "the three sample events are served")
        shown = try_search_in_swagger_ui(service.base_url, chromium, tmp_path / "docs.png")
    assert shown["status"] == "200", shown
    assert "Camela en concierto" in shown["body"]
    assert f"{service.base_url}/openapi.json" in shown["requested"]
    outside = [url for url in shown["requested"] if not is_local(url)]
    assert outside == [], f"the page reached outside the service: {outside}"
    assert [e for e in shown["errors"] if "Content Security Policy" in e] == []
