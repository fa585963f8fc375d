"""Query parsing: accepted forms, the time-zone rule, normalization, and clear 400 messages."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from urllib.parse import quote

import pytest

from eventapi.errors import InvalidParameter
from eventapi.events import local_seconds
from eventapi.query import TimeRange, parse_query

MADRID = zoneinfo.ZoneInfo("Europe/Madrid")


def secs(*parts: int) -> int:
    return local_seconds(datetime(*parts))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        "2021-07-01",
        "2021-07-01T00:00:00",
        "2021-07-01T00:00:00%2B02:00",
        "2021-07-01T00:00:00+02:00",
        "2021-06-30T22:00:00Z",
        "2021-06-30T22:00:00z",
        "2021-06-30t22:00:00Z",
        "2021-06-30T22:00:00.000Z",
        "2021-06-30T22%3A00%3A00Z",
    ],
)
def test_equivalent_forms_normalize_to_the_same_range(value: str) -> None:
    """Midnight of 1 July in Madrid (summer, +02:00), written nine ways, is one range."""
    assert parse_query(f"starts_at={value}".encode(), MADRID) == TimeRange(secs(2021, 7, 1), None)


@pytest.mark.parametrize("separator", [b"T", b"t", b"%20", b"+"])
def test_date_and_time_may_be_separated_by_t_or_a_space_sent_either_way(separator: bytes) -> None:
    """HTTP clients send a space as %20 or as '+'; right after the date a '+' cannot start an offset."""
    query = b"starts_at=2021-07-01" + separator + b"10:00:00%2B02:00"
    assert parse_query(query, MADRID) == TimeRange(secs(2021, 7, 1, 10), None)


def test_offset_in_winter_converts_with_the_winter_offset() -> None:
    """In January Madrid is +01:00: 12:00Z is 13:00 local."""
    assert parse_query(b"ends_at=2021-01-15T12:00:00Z", MADRID).ends_at == secs(2021, 1, 15, 13)


def test_time_zone_setting_changes_how_offsets_are_read() -> None:
    """The provider zone is a setting: the same instant is another wall-clock time elsewhere."""
    utc = zoneinfo.ZoneInfo("UTC")
    assert parse_query(b"starts_at=2021-07-01T00:00:00+02:00", utc).starts_at == secs(2021, 6, 30, 22)


def test_missing_parameters_mean_unbounded() -> None:
    """No starts_at: no lower bound; no ends_at: no upper bound; neither: everything."""
    assert parse_query(b"", MADRID) == TimeRange(None, None)
    assert parse_query(b"ends_at=2021-07-01", MADRID) == TimeRange(None, secs(2021, 7, 1))
    assert parse_query(b"starts_at=2021-07-01", MADRID) == TimeRange(secs(2021, 7, 1), None)


def test_fractional_seconds_round_inwards() -> None:
    """Event times are whole seconds: a fractional bound excludes the second it falls in."""
    time_range = parse_query(
        b"starts_at=2021-07-01T10:00:00.25&ends_at=2021-07-01T11:00:00.999999999", MADRID
    )
    assert time_range == TimeRange(secs(2021, 7, 1, 10, 0, 1), secs(2021, 7, 1, 11))


def test_equal_bounds_are_a_valid_instant_range() -> None:
    """starts_at == ends_at asks for events that start and end at that instant."""
    assert parse_query(b"starts_at=2021-07-01&ends_at=2021-07-01", MADRID) == TimeRange(
        secs(2021, 7, 1), secs(2021, 7, 1)
    )


def test_day_window_follows_the_bounds() -> None:
    """Events in range start between the day of starts_at and the day of ends_at."""
    time_range = parse_query(b"starts_at=2021-07-01T10:00:00&ends_at=2021-07-03T01:00:00", MADRID)
    first, last = time_range.first_day, time_range.last_day
    assert first is not None and last is not None
    assert (first, last - first) == (datetime(2021, 7, 1).toordinal(), 2)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        (b"starts_at=2021-02-30", "starts_at"),
        (b"starts_at=2021-13-01", "starts_at"),
        (b"ends_at=tomorrow", "ends_at"),
        (b"ends_at=", "ends_at"),
        (b"starts_at=2021-07-01T25:00:00", "starts_at"),
        (b"starts_at=2021-07-01T10:00", "starts_at"),
        (b"starts_at=2021-07-01T10:00:00+2", "starts_at"),
        (b"starts_at=2021-07-01T10:00:00+02:99", "starts_at"),
        (b"starts_at=20210701", "starts_at"),
        (b"starts_at=2021-07-01T00:00:00 02:00", "starts_at"),
        (b"starts_at=0000-01-01", "starts_at"),
        (b"starts_at=0001-01-01T00:00:00%2B23:59", "starts_at"),
        (b"ends_at=9999-12-31T23:59:59-23:59", "ends_at"),
        (b"starts_at=2021-01-01&starts_at=2021-01-02", "more than once"),
        (b"start_at=2021-01-01", "start_at"),
        (b"starts_at=2022-01-01&ends_at=2021-01-01", "later than ends_at"),
        (b"starts_at=%ff%fe", "starts_at"),
        (b"starts_at=\xff", "starts_at"),
        (b"starts_at=" + quote("٢٠٢١-01-01").encode(), "starts_at"),  # non-ASCII digits, percent-encoded
        (b"\xff=1", "parameter name"),
    ],
)
def test_bad_queries_raise_an_error_naming_the_problem(query: bytes, named: str) -> None:
    """Every unusable query raises InvalidParameter whose message names the parameter or rule."""
    with pytest.raises(InvalidParameter, match=named):
        parse_query(query, MADRID)


def test_error_message_shows_the_value_and_the_accepted_forms() -> None:
    """A person reading the 400 learns what was received and what to send instead."""
    with pytest.raises(InvalidParameter) as caught:
        parse_query(b"starts_at=2021-02-30", MADRID)
    message = str(caught.value)
    assert "'2021-02-30'" in message and "2021-07-21T17:32:28Z" in message


def test_huge_values_are_cut_in_the_message() -> None:
    """A megabyte of junk does not come back in the error message."""
    with pytest.raises(InvalidParameter) as caught:
        parse_query(b"starts_at=" + b"x" * 100_000, MADRID)
    assert len(str(caught.value)) < 400
