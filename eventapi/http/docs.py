"""Swagger UI at /docs, from a copy of its assets in the package: no CDN, so the page works offline.

`static/swagger-ui/` is npm's swagger-ui-dist 5.35.0 (docs/decisions/009-swagger-ui-vendored-from-npm.md).
"""

from __future__ import annotations

import functools
from pathlib import Path

from eventapi.errors import NotFound
from eventapi.http.asgi import Scope
from eventapi.http.responses import Response, error_response, response

DOCS_PATH = "/docs"
ASSETS_PREFIX = "/docs/"
ASSETS_DIR = Path(__file__).parent / "static" / "swagger-ui"

CONTENT_TYPES = {
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".png": b"image/png",
    ".html": b"text/html; charset=utf-8",
    ".map": b"application/json",
}
ASSET_HEADERS = ((b"cache-control", b"public, max-age=86400"), (b"x-content-type-options", b"nosniff"))
# Everything the page loads comes from this service; Swagger UI sets styles inline and its CSS
# draws icons from data: URLs, hence the two allowances.
PAGE_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        b"frame-ancestors 'none'",
    ),
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
)

# The start-up script is a file, not inline, so the page's policy can forbid inline scripts.
# validatorUrl null: the default sends the document to an external validator for a badge.
INIT_JS = b"""window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  validatorUrl: null
});
"""
INIT_NAME = "init.js"

PAGE_HTML = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>eventapi - Swagger UI</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""

PAGE = response(200, PAGE_HTML, PAGE_HEADERS, content_type=CONTENT_TYPES[".html"])
INIT = response(200, INIT_JS, ASSET_HEADERS, content_type=CONTENT_TYPES[".js"])

# The allow-list, fixed at import: only these names are ever opened, so no request path (with "/",
# "..", or a decoded "%2F") can reach another file.
ASSET_NAMES = frozenset(
    path.name for path in ASSETS_DIR.iterdir() if path.is_file() and path.suffix in CONTENT_TYPES
)


@functools.cache
def _asset(name: str) -> Response:
    """One allowed file as a response, read on its first request and kept (a few files, ~2 MB)."""
    body = (ASSETS_DIR / name).read_bytes()
    return response(200, body, ASSET_HEADERS, content_type=CONTENT_TYPES[Path(name).suffix])


async def docs_page(scope: Scope) -> Response:
    """The HTML page that loads Swagger UI on /openapi.json."""
    return PAGE


async def docs_asset(scope: Scope) -> Response:
    """One static asset of Swagger UI under /docs/ (and the page itself at /docs/)."""
    name = scope["path"][len(ASSETS_PREFIX) :]
    if name == "":
        return PAGE
    if name == INIT_NAME:
        return INIT
    if name in ASSET_NAMES:
        return _asset(name)
    return error_response(NotFound(f"no such asset {name[:100]!r} under {ASSETS_PREFIX}"))
