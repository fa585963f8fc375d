"""What handlers return, and the one table that turns public errors into HTTP responses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson

from eventapi.errors import PublicError

JSON = b"application/json"
Headers = tuple[tuple[bytes, bytes], ...]

# Every public error code and its status; tests/test_openapi_consistency.py holds the OpenAPI
# document (eventapi/http/openapi.json) and the PublicError classes to it.
ERROR_STATUS: Mapping[str, int] = {
    "invalid_parameter": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "internal_error": 500,
    "unavailable": 503,
}
INTERNAL_ERROR_MESSAGE = "Internal error: the failure has been logged."


# A finished response, headers complete: (status, headers, body). Plain tuples of bytes and ints, so
# one built once can be cached and sent again and again, and the cyclic GC never walks a cached one
# (docs/decisions/012-no-collector-stalls.md).
Response = tuple[int, Headers, bytes]


def response(
    status: int, body: bytes, extra_headers: Iterable[tuple[bytes, bytes]] = (), content_type: bytes = JSON
) -> Response:
    """A response with content-type and content-length (the length of GET's body, also for HEAD)."""
    return (
        status,
        ((b"content-type", content_type), (b"content-length", b"%d" % len(body)), *extra_headers),
        body,
    )


def error_response(error: PublicError, extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> Response:
    """A public error in the spec's envelope, with the status its code has in the table."""
    if error.code not in ERROR_STATUS:  # a code nobody added to the table: a bug, shown as one
        error, extra_headers = PublicError(INTERNAL_ERROR_MESSAGE), ()
    body = orjson.dumps({"data": None, "error": {"code": error.code, "message": str(error)}})
    return response(ERROR_STATUS[error.code], body, extra_headers)


def internal_error_response() -> Response:
    """The 500 every unexpected failure becomes: a fixed message; the traceback goes to the log."""
    return error_response(PublicError(INTERNAL_ERROR_MESSAGE))
