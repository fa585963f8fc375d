"""The OpenAPI 3.1 document, served at GET /openapi.json: the data file `openapi.json` beside this module.

One source, edited as data; tests/test_openapi_consistency.py fails when it and the code disagree.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import metadata, resources
from typing import Any

OPENAPI_PATH = "/openapi.json"
DOCUMENT_FILE = "openapi.json"


def _version() -> str:
    try:
        return metadata.version("eventapi")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0"


@cache
def openapi_document() -> dict[str, Any]:
    """The document read once, `info.version` from the installed package: shared, do not change it."""
    text = resources.files("eventapi.http").joinpath(DOCUMENT_FILE).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    document["info"]["version"] = _version()
    return document
