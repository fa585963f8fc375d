"""Query parsing and range normalization for /search: pure, and strict about what it accepts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import NamedTuple
from urllib.parse import unquote

from eventapi.errors import InvalidParameter
from eventapi.events import day_of, local_seconds

PARAMETERS = ("starts_at", "ends_at")
ACCEPTED_FORMS = (
    "RFC 3339 such as 2021-07-21T17:32:28Z or 2021-07-21T19:32:28+02:00, "
    "a local date-time such as 2021-07-21T17:32:28, or a date such as 2021-07-21"
)
# ASCII digits only (re.ASCII: \d would accept ٢٠٢١). Between date and time: T, t, or a space,
# also when sent as '+', since right after the date a '+' cannot begin an offset.
_MOMENT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt +](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?)?",
    re.ASCII,
)
_MAX_VALUE_LENGTH = 64
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Inclusive bounds in local seconds (None: unbounded); equal ranges are equal queries."""

    starts_at: int | None = None
    ends_at: int | None = None

    @property
    def first_day(self) -> int | None:
        """The earliest start day an event in range can have."""
        return None if self.starts_at is None else day_of(self.starts_at)

    @property
    def last_day(self) -> int | None:
        """The latest start day an event in range can have (it starts before it ends)."""
        return None if self.ends_at is None else day_of(self.ends_at)


def parse_query(query_string: bytes, tz: tzinfo) -> TimeRange:
    """Read starts_at / ends_at from a raw query string; anything unusable raises InvalidParameter."""
    values: dict[str, str] = {}
    for pair in query_string.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name = _decode(raw_name, "a query parameter name")
        value = _decode(raw_value, f"the value of {_show(name)}")
        if name not in PARAMETERS:
            raise InvalidParameter(
                f"unknown parameter {_show(name)}: the accepted parameters are starts_at and ends_at"
            )
        if name in values:
            raise InvalidParameter(f"{name} is given more than once: give it at most once")
        values[name] = value
    starts = _bound("starts_at", values.get("starts_at"), tz)
    ends = _bound("ends_at", values.get("ends_at"), tz)
    # Order is judged on the instants the caller meant, to the nanosecond: two bounds in the same
    # second, or either side of the autumn's repeated hour, are a valid range (one that holds no
    # event), not an inverted one.
    if starts is not None and ends is not None and starts.instant_ns > ends.instant_ns:
        raise InvalidParameter(
            f"starts_at ({values['starts_at']}) is later than ends_at ({values['ends_at']}): "
            "starts_at must not be after ends_at"
        )
    return TimeRange(
        None if starts is None else starts.wall_seconds + starts.fractional,  # later within its second
        None if ends is None else ends.wall_seconds,
    )


class Moment(NamedTuple):
    """A parsed bound: its wall-clock second in the provider's zone, and the exact instant meant.

    A NamedTuple: built twice per miss, and cheaper to build than a frozen dataclass (decision 016).
    """

    wall_seconds: int  # local seconds of the wall-clock second it falls in
    fractional: bool  # a non-zero fraction, at any digit
    instant_ns: int  # nanoseconds since 1970-01-01T00:00:00Z


def parse_moment(text: str, tz: tzinfo) -> Moment:
    """One accepted date or date-time, read in `zone` unless it has an offset; ValueError otherwise."""
    match = _MOMENT.fullmatch(text)
    if match is None:
        raise ValueError("not an accepted form")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    whole = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    nanoseconds = int(fraction.ljust(9, "0")) if fraction else 0
    if offset:
        aware = whole.replace(tzinfo=_offset(offset))
        wall_seconds = local_seconds(aware.astimezone(tz).replace(tzinfo=None))
        since_epoch = (aware - _EPOCH_UTC) // _SECOND
    else:
        # The instant of a local wall time is its second less the zone's offset then, read as
        # `whole.replace(tzinfo=tz)` would (fold 0), without building the aware datetime, about a
        # third of a bound's cost; a miss parses two (decision 016).
        wall_seconds = local_seconds(whole)
        since_epoch = wall_seconds - _offset_seconds(tz, whole)
    return Moment(wall_seconds, nanoseconds > 0, since_epoch * 1_000_000_000 + nanoseconds)


def _offset_seconds(tz: tzinfo, wall: datetime) -> int:
    offset = tz.utcoffset(wall)
    if offset is None:  # a tzinfo that does not know its offsets: not one the settings accept
        raise ValueError(f"{tz!r} gives no UTC offset for {wall}")
    return offset // _SECOND


def _bound(name: str, text: str | None, tz: tzinfo) -> Moment | None:
    if text is None:
        return None
    try:
        return parse_moment(text, tz)
    except (ValueError, OverflowError):
        raise InvalidParameter(
            f"{name}={_show(text)} is not a valid date-time: expected {ACCEPTED_FORMS}"
        ) from None


def _offset(text: str) -> tzinfo:
    if text in ("Z", "z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    if minutes >= 60:
        raise ValueError("offset minutes out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _decode(raw: bytes, what: str) -> str:
    # unquote, not unquote_plus: a '+' in an offset (…+02:00) sent unencoded must stay a '+'.
    try:
        text = raw.decode("ascii")
        return unquote(text, errors="strict") if "%" in text else text
    except UnicodeError:
        raise InvalidParameter(f"{what} is not valid percent-encoded UTF-8") from None


def _show(text: str) -> str:
    shown = text if len(text) <= _MAX_VALUE_LENGTH else text[:_MAX_VALUE_LENGTH] + "…"
    return repr(shown)
