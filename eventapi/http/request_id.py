"""X-Request-ID: a client's (or nginx's) id for one request, echoed in the answer and logged.

Bounded before it goes anywhere: at most 128 of `A-Z a-z 0-9 . _ -`; any other value is replaced by a
fresh random id (32 hex digits, the shape of nginx's `$request_id`). No header, no id: nothing is
generated, so a request without one costs only the header scan (docs/logging.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

HEADER = b"x-request-id"
MAX_LENGTH = 128
_VALID = re.compile(rb"[A-Za-z0-9._-]{1,%d}" % MAX_LENGTH).fullmatch


def new_request_id() -> bytes:
    """A random id: 16 bytes as 32 lowercase hex digits."""
    return os.urandom(16).hex().encode()


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The request's id: the header's value when it is valid, a new one when not, None without one."""
    for name, value in headers:
        if name == HEADER:
            return bytes(value) if _VALID(value) else new_request_id()
    return None
