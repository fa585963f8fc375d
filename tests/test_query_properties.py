"""Property-based tests of parse_query: any input gives a range or the typed 400 error, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from urllib.parse import quote
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from eventapi.errors import InvalidParameter
from eventapi.events import local_seconds
from eventapi.query import TimeRange, parse_query

MADRID = ZoneInfo("Europe/Madrid")
# Deterministic in CI: the same examples on every run, no wall-clock deadline on a busy runner.
PROPERTY = settings(
    max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
NAMES = ("starts_at", "ends_at")


def parse_or_reject(query: bytes) -> TimeRange | None:
    """parse_query's answer, None for InvalidParameter; any other exception fails the test."""
    rejection: InvalidParameter | None = None
    try:
        result = parse_query(query, MADRID)
    except InvalidParameter as exc:
        rejection = exc
    if rejection is not None:
        assert str(rejection)  # the typed error always says what was wrong
        return None
    assert type(result) is TimeRange
    assert all(bound is None or type(bound) is int for bound in (result.starts_at, result.ends_at))
    if result.starts_at is not None and result.ends_at is not None:
        # Ordered instants may still make an empty wall-clock window (the same second after
        # rounding, or either side of the autumn's repeated hour), never a wider inverted one.
        assert result.starts_at <= result.ends_at + 3600
    return result


def wall_clock(moment: datetime) -> datetime:
    """The aware `moment` as a naive Europe/Madrid wall-clock time."""
    # Through UTC: astimezone(MADRID) on a Madrid time returns it as is, even inside the spring gap.
    return moment.astimezone(UTC).astimezone(MADRID).replace(tzinfo=None)


# --- any input -----------------------------------------------------------------------------------


@PROPERTY
@given(st.binary(max_size=300))
def test_any_bytes_give_a_range_or_invalid_parameter(query: bytes) -> None:
    """Arbitrary bytes as a whole query string never raise anything but InvalidParameter."""
    parse_or_reject(query)


@PROPERTY
@given(st.sampled_from(NAMES), st.binary(max_size=120))
def test_any_bytes_as_a_value_give_a_range_or_invalid_parameter(name: str, value: bytes) -> None:
    """Arbitrary bytes after a known name (non-UTF-8, %, NUL, '&', '=') only ever give a 400."""
    parse_or_reject(name.encode() + b"=" + value)


@PROPERTY
@given(st.text(max_size=120), st.booleans())
def test_any_text_raw_or_percent_encoded_gives_a_range_or_invalid_parameter(text: str, encode: bool) -> None:
    """Any text (surrogates included), sent raw as UTF-8 or percent-encoded, never crashes the parser."""
    value = quote(text, safe="", errors="surrogatepass") if encode else text
    parse_or_reject(b"starts_at=" + value.encode("utf-8", "surrogatepass"))
    parse_or_reject(value.encode("utf-8", "surrogatepass"))


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.sampled_from([*NAMES, "start_at", "", "%73tarts_at", "ends_at%00"]), st.text(max_size=30)
        ),
        max_size=5,
    ),
    st.sampled_from([b"&", b"&&", b";"]),
)
def test_any_parameter_list_gives_a_range_or_invalid_parameter(
    pairs: list[tuple[str, str]], separator: bytes
) -> None:
    """Repeated, unknown, empty and encoded names in any combination give a range or a 400."""
    query = separator.join(
        name.encode() + b"=" + quote(value, errors="surrogatepass").encode() for name, value in pairs
    )
    parse_or_reject(query)


# --- near-valid values built from parts ----------------------------------------------------------

# As sent in the query string: what each decodes to.
SEPARATORS = {"T": "T", "t": "t", "%20": " ", "+": "+", "%2B": "+", "%2b": "+", "_": "_", "": ""}
SIGNS = {"+": "+", "%2B": "+", "-": "-", "%2D": "-", "\u2212": "\u2212"}


@st.composite
def near_valid_moments(draw: st.DrawFn, max_fraction_digits: int = 10) -> tuple[str, datetime | None, bool]:
    """A date or date-time from possibly bad parts: (query value, expected wall-clock or None, fractional)."""
    year = draw(st.integers(0, 10_000))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    text = f"{year:04d}-{month:02d}-{day:02d}"
    valid = True
    try:
        moment = datetime(year, month, day)
    except ValueError:
        valid = False
    if not draw(st.booleans()):
        return text, moment if valid else None, False
    separator = draw(st.sampled_from(sorted(SEPARATORS)))
    valid = valid and SEPARATORS[separator] in ("T", "t", " ", "+")
    hour, minute, second = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    text += f"{separator}{hour:02d}:{minute:02d}:{second:02d}"
    valid = valid and hour < 24 and minute < 60 and second < 60
    fraction = draw(st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=max_fraction_digits)))
    microsecond = 0
    if fraction is not None:
        text += "." + fraction
        valid = valid and len(fraction) <= 9
        microsecond = int(fraction[:6].ljust(6, "0"))
    zone: tzinfo | None = None
    offset = draw(st.sampled_from([None, "Z", "z", "sign"]))
    if offset in ("Z", "z"):
        text, zone = text + offset, UTC
    elif offset == "sign":
        sign = draw(st.sampled_from(sorted(SIGNS)))
        hours, minutes = draw(st.integers(0, 25)), draw(st.integers(0, 61))
        text += f"{sign}{hours:02d}:{minutes:02d}"
        valid = valid and SIGNS[sign] in "+-" and hours < 24 and minutes < 60
        if valid:
            zone = timezone((-1 if SIGNS[sign] == "-" else 1) * timedelta(hours=hours, minutes=minutes))
    if not valid:
        return text, None, False
    try:
        local = datetime(year, month, day, hour, minute, second, microsecond)
        if zone is not None:
            local = wall_clock(local.replace(tzinfo=zone))
    except (ValueError, OverflowError):
        return text, None, False
    return text, local, fraction is not None and int(fraction) != 0


@PROPERTY
@given(st.sampled_from(NAMES), near_valid_moments(max_fraction_digits=6))
def test_near_valid_value_parses_exactly_when_its_parts_are_valid(
    name: str, moment: tuple[str, datetime | None, bool]
) -> None:
    """A value built from parts is accepted iff every part is in range, at the right local second."""
    text, expected, fractional = moment
    result = parse_or_reject(f"{name}={text}".encode())
    if expected is None:
        assert result is None, f"{text!r} should be rejected"
        return
    assert result is not None, f"{text!r} should be accepted"
    seconds = local_seconds(expected)
    if name == "starts_at":  # a fractional lower bound excludes its own second
        assert result == TimeRange(seconds + 1 if fractional else seconds, None)
    else:
        assert result == TimeRange(None, seconds)


@PROPERTY
@given(near_valid_moments(), near_valid_moments(), st.booleans())
def test_two_near_valid_bounds_give_a_range_or_invalid_parameter(
    starts: tuple[str, datetime | None, bool], ends: tuple[str, datetime | None, bool], swap: bool
) -> None:
    """Two bounds with up to 10 fraction digits, in either order, give an ordered range or a 400."""
    pairs = [f"starts_at={starts[0]}", f"ends_at={ends[0]}"]
    if swap:
        pairs.reverse()
    result = parse_or_reject("&".join(pairs).encode())
    if starts[1] is None or ends[1] is None:
        assert result is None


# --- round trip ------------------------------------------------------------------------------------

# DST gaps and folds, half- and quarter-hour offsets, a 30-minute DST shift.
IANA_ZONES = [
    "Europe/Madrid",
    "America/New_York",
    "America/St_Johns",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
]
WHOLE_MINUTE_OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def aware_datetimes(draw: st.DrawFn) -> datetime:
    """Aware datetimes in 1900..2200 with a whole-minute offset (fixed or from an IANA zone)."""
    zones = st.one_of(st.just(UTC), WHOLE_MINUTE_OFFSETS, st.sampled_from(IANA_ZONES).map(ZoneInfo))
    moment = draw(st.datetimes(datetime(1900, 1, 1), datetime(2200, 12, 31), timezones=zones))
    offset = moment.utcoffset()
    assume(offset is not None and offset.seconds % 60 == 0 and offset.microseconds == 0)
    return moment


@PROPERTY
@given(
    aware_datetimes(), st.sampled_from(["+", "%2B", "%2b"]), st.booleans(), st.sampled_from(["T", "%20", "+"])
)
def test_isoformat_round_trips_to_the_madrid_wall_clock_second(
    moment: datetime, plus: str, zulu: bool, separator: str
) -> None:
    """isoformat() of any aware instant parses to its Madrid wall-clock second: starts_at up, ends_at down."""
    text = moment.isoformat()
    if zulu and moment.utcoffset() == timedelta(0):
        text = text.removesuffix("+00:00") + "Z"
    text = text[:10] + separator + text[11:].replace("+", plus)
    seconds = local_seconds(wall_clock(moment))
    fractional = moment.microsecond != 0
    assert parse_query(f"starts_at={text}".encode(), MADRID) == TimeRange(
        seconds + 1 if fractional else seconds, None
    )
    assert parse_query(f"ends_at={text}".encode(), MADRID) == TimeRange(None, seconds)


# --- known bugs ------------------------------------------------------------------------------------


def test_sub_microsecond_fraction_still_excludes_its_second_as_starts_at() -> None:
    """starts_at=10:00:00.0000001 is after 10:00:00, so the bound is 10:00:01 like any other fraction."""
    whole = local_seconds(datetime(2021, 7, 1, 10, 0, 0))
    assert parse_query(b"starts_at=2021-07-01T10:00:00.0000001", MADRID) == TimeRange(whole + 1, None)


def test_fractional_bounds_within_one_second_are_an_empty_range_not_an_error() -> None:
    """starts_at before ends_at in the same second is a valid range holding no whole-second event."""
    result = parse_or_reject(b"starts_at=2021-07-01T10:00:00.2&ends_at=2021-07-01T10:00:00.7")
    whole = local_seconds(datetime(2021, 7, 1, 10, 0, 0))
    assert result == TimeRange(whole + 1, whole)  # no event starts at or after 10:00:01 and ends by 10:00


def test_ordered_instants_across_the_autumn_change_are_not_rejected() -> None:
    """Two instants in order are never 'starts_at later than ends_at', even when wall-clock goes back."""
    result = parse_or_reject(b"starts_at=2021-10-31T00:45:00Z&ends_at=2021-10-31T01:15:00Z")
    assert result is not None
