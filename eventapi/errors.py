"""The few error types of eventapi; `app.py` maps them to HTTP responses in one table."""

from __future__ import annotations


class EventApiError(Exception):
    """Base class: an error with a stable machine-readable code."""

    code = "internal_error"


class InvalidParameter(EventApiError):
    """A query parameter the caller sent cannot be used (bad form, repeated, unknown, inverted range)."""

    code = "invalid_parameter"


class StoreUnavailable(EventApiError):
    """The store cannot be reached and nothing cached can answer."""

    code = "unavailable"


class SettingsError(EventApiError):
    """An environment variable holds a value eventapi cannot use; the message names it."""

    code = "bad_setting"


class FeedError(EventApiError):
    """The provider's feed could not be fetched or read as a whole; nothing is stored from it."""

    code = "feed_error"


class FeedRefused(FeedError):
    """The feed was refused on purpose: too large, or XML with a DOCTYPE or entity declarations."""

    code = "feed_refused"
