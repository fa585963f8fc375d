"""Typed errors: the public ones reach clients with a stable code; the others stay inside the service.

`eventapi.http.responses` maps each public code to its HTTP status in one table.
"""

from __future__ import annotations

from typing import ClassVar


class PublicError(Exception):
    """An error a client sees: a stable machine-readable code and a message a person can act on."""

    code: ClassVar[str] = "internal_error"


class InvalidParameter(PublicError):
    """A query parameter the caller sent cannot be used (bad form, repeated, unknown, inverted range)."""

    code = "invalid_parameter"


class NotFound(PublicError):
    """No route serves the requested path."""

    code = "not_found"


class MethodNotAllowed(PublicError):
    """The path exists but not for this method."""

    code = "method_not_allowed"


class StoreUnavailable(PublicError):
    """The store cannot be reached and nothing cached can answer."""

    code = "unavailable"


class LayoutRefused(StoreUnavailable):
    """The store holds a layout this version cannot read: it neither serves nor writes it."""


class SettingsError(Exception):
    """An environment variable holds a value eventapi cannot use; the message names it."""


class FeedError(Exception):
    """The provider's feed could not be fetched or read as a whole; nothing is stored from it."""


class FeedRefused(FeedError):
    """The feed was refused on purpose: too large, or XML with a DOCTYPE or entity declarations."""
