"""The history file: what `eventapi export` writes reads back to the same bytes; a bad line is named."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import pytest

from eventapi.events import Event, StoredEvent, event_id
from eventapi.history_file import Header, HistoryFileError, decode, encode
from eventapi.store import Version

HEADER = Header(Version(7, "0123456789ab"), "2026-11-29T12:00:00.000Z", 2)


def stored(base: str, day: int = 0, title: str = "T", min_price: float | None = 1.5) -> StoredEvent:
    start = datetime(2021, 7, 1, 20) + timedelta(days=day)
    end = start + timedelta(minutes=90)
    return StoredEvent.from_event(
        Event(event_id(base, "1"), base, "1", title, start, end, min_price, 2.0, True)
    )


EVENTS = [stored("b", 1, title='Ñandú «quoted» "x" \\ 🎉', min_price=None), stored("a", min_price=0.1 + 0.2)]


def file_lines(header: Header = HEADER, events: list[StoredEvent] = EVENTS) -> list[bytes]:
    return list(encode(header, events))


def test_encoded_file_decodes_to_the_same_stored_bytes() -> None:
    """The served JSON comes back byte for byte (escapes, non-ASCII, nulls), so answers stay identical."""
    history = decode(file_lines())
    assert history.header == HEADER
    assert sorted(history.events, key=lambda e: e.id) == sorted(EVENTS, key=lambda e: e.id)


def test_events_are_written_in_start_order_after_one_header_line() -> None:
    """A fixed order makes two exports of the same history the same file (diffable, checksummable)."""
    lines = file_lines()
    assert orjson.loads(lines[0])["format"] == "eventapi-history" and orjson.loads(lines[0])["events"] == 2
    assert [orjson.loads(line)["id"] for line in lines[1:]] == [EVENTS[1].id, EVENTS[0].id]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)


def test_empty_history_is_the_header_alone() -> None:
    """An empty store exports one line, and that line imports as an empty history."""
    lines = file_lines(Header(Version(0, "e"), "2026-11-29T12:00:00.000Z", 0), [])
    assert len(lines) == 1 and decode(lines).events == []


def replace_field(line: bytes, path: tuple[str, ...], value: object) -> bytes:
    fields = orjson.loads(line)
    target = fields
    for name in path[:-1]:
        target = target[name]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return orjson.dumps(fields) + b"\n"


_DELETE = object()
FIRST, SECOND = 2, 3  # the file's line numbers of the two events


@pytest.mark.parametrize(
    ("line", "edit", "reason"),
    [
        (FIRST, lambda line: line[:40] + b"\n", "not JSON"),
        (SECOND, lambda line: b"\n", "empty line"),
        (FIRST, lambda line: b"[1, 2]\n", "expected a JSON object"),
        (1, lambda line: replace_field(line, ("version",), 2), "format version 2"),
        (1, lambda line: replace_field(line, ("format",), "other"), "not an eventapi-history header"),
        (1, lambda line: replace_field(line, ("generation",), -1), "generation"),
        (1, lambda line: replace_field(line, ("events",), 3), "announces 3 events and the file holds 2"),
        (SECOND, lambda line: replace_field(line, ("event", "title"), _DELETE), "missing fields ['title']"),
        (FIRST, lambda line: replace_field(line, ("event", "venue"), "x"), "unknown fields ['venue']"),
        (FIRST, lambda line: replace_field(line, ("event", "min_price"), "1.5"), "min_price is '1.5'"),
        (FIRST, lambda line: replace_field(line, ("event", "max_price"), True), "max_price is True"),
        (SECOND, lambda line: replace_field(line, ("id",), event_id("z", "1")), "not the id of its event"),
        (SECOND, lambda line: replace_field(line, ("event", "id"), "x"), "not the id of its event"),
        (FIRST, lambda line: replace_field(line, ("id",), _DELETE), "expected the fields id and event"),
        (
            FIRST,
            lambda line: replace_field(line, ("event", "start_date"), "2021-02-30"),
            "start '2021-02-30'",
        ),
        (SECOND, lambda line: replace_field(line, ("event", "end_time"), "9:00"), "end '2021-07-02' '9:00'"),
        (SECOND, lambda line: replace_field(line, ("event", "end_date"), "20210701"), "does not parse"),
    ],
)
def test_a_bad_line_refuses_the_file_naming_the_line(line: int, edit: object, reason: str) -> None:
    """An operator fixes a backup from the message: the line number and what is wrong with it."""
    lines = file_lines()
    lines[line - 1] = edit(lines[line - 1])  # type: ignore[operator]
    with pytest.raises(HistoryFileError) as refused:
        decode(lines)
    assert refused.value.line == (1 if "announces" in reason else line)
    assert str(refused.value).startswith(f"line {refused.value.line}: ") and reason in str(refused.value)


def test_an_event_twice_is_refused_at_its_second_line() -> None:
    """Two values for one id leave no way to tell which is meant."""
    lines = file_lines(Header(HEADER.version, HEADER.exported_at, 3), [*EVENTS, EVENTS[0]])
    with pytest.raises(HistoryFileError, match=f"line 4: event {EVENTS[0].id} appears a second time"):
        decode(lines)


def test_an_empty_file_is_refused_as_having_no_header() -> None:
    """A zero-byte file (a backup job that failed silently) is no empty history."""
    with pytest.raises(HistoryFileError, match="line 1: the file is empty"):
        decode([])
