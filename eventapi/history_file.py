"""The history file: a store's served events as JSON lines, to back them up and move them between stores.

Line 1 is the header, `{"format": "eventapi-history", "version": 1, "generation": …, "epoch": …,
"exported_at": …, "events": N}`; then N lines `{"id": …, "event": {…}}`, the event's served JSON as
stored. The plan ids an id derives from are not kept (the stores keep only the id and the served
JSON): a later feed's plan maps to the same id (`events.event_id`), so a restored event follows it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from eventapi.events import StoredEvent, kept_json, local_seconds
from eventapi.versions import Version

FORMAT = "eventapi-history"
VERSION = 1
# The served event (EventSummary): each field and the JSON types it may hold.
_SUMMARY: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "title": (str,),
    "start_date": (str,),
    "start_time": (str,),
    "end_date": (str,),
    "end_time": (str,),
    "min_price": (int, float, type(None)),
    "max_price": (int, float, type(None)),
}
# The exact forms Event.to_json writes: anything else would be served as it is, in another form.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}:\d{2}")


class HistoryFileError(ValueError):
    """A history file that cannot be restored whole; the message names the line (1 is the header)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line


@dataclass(frozen=True, slots=True)
class Header:
    """What the first line says: the exported store's version, when, and how many events follow."""

    version: Version
    exported_at: str
    events: int


@dataclass(frozen=True, slots=True)
class History:
    """A history file's content, validated whole."""

    header: Header
    events: list[StoredEvent]


def encode(header: Header, events: Iterable[StoredEvent]) -> Iterator[bytes]:
    """The file's lines (each ending in a newline), events by (start, id) so two exports diff well."""
    yield (
        orjson.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "generation": header.version.generation,
                "epoch": header.version.epoch,
                "exported_at": header.exported_at,
                "events": header.events,
            }
        )
        + b"\n"
    )
    for event in sorted(events, key=lambda event: (event.start, event.id)):
        # The stored bytes go in as they are: an import dumps them back to the same bytes.
        yield b'{"id":%s,"event":%s}\n' % (orjson.dumps(event.id), event.json)


def decode(lines: Iterable[bytes]) -> History:
    """Read and validate a whole file; HistoryFileError naming the first bad line."""
    numbered = enumerate((line.rstrip(b"\r\n") for line in lines), start=1)
    first = next(numbered, None)
    if first is None:
        raise HistoryFileError(1, "the file is empty: no header")
    header = _header(*first)
    events: list[StoredEvent] = []
    seen: set[str] = set()
    for number, line in numbered:
        event = _event(number, line)
        if event.id in seen:
            raise HistoryFileError(number, f"event {event.id} appears a second time")
        seen.add(event.id)
        events.append(event)
    if len(events) != header.events:
        raise HistoryFileError(
            1, f"the header announces {header.events} events and the file holds {len(events)} (cut short?)"
        )
    return History(header, events)


def _object(number: int, line: bytes) -> dict[str, Any]:
    if not line.strip():
        raise HistoryFileError(number, "empty line")
    try:
        found = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise HistoryFileError(number, f"not JSON ({exc})") from None
    if not isinstance(found, dict):
        raise HistoryFileError(number, f"expected a JSON object, found {type(found).__name__}")
    return found


def _header(number: int, line: bytes) -> Header:
    fields = _object(number, line)
    if fields.get("format") != FORMAT:
        raise HistoryFileError(number, f"not an {FORMAT} header (format {fields.get('format')!r})")
    if fields.get("version") != VERSION:
        raise HistoryFileError(
            number, f"format version {fields.get('version')!r}; this version of eventapi reads {VERSION}"
        )
    generation, count = _count(number, fields, "generation"), _count(number, fields, "events")
    epoch, exported_at = fields.get("epoch"), fields.get("exported_at")
    if not (isinstance(epoch, str) and isinstance(exported_at, str)):
        raise HistoryFileError(number, "header: epoch and exported_at must be strings")
    return Header(Version(generation, epoch), exported_at, count)


def _count(number: int, fields: dict[str, Any], name: str) -> int:
    value = fields.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise HistoryFileError(number, f"header: {name} is {value!r}, expected a whole number >= 0")
    return value


def _event(number: int, line: bytes) -> StoredEvent:
    fields = _object(number, line)
    if set(fields) != {"id", "event"}:
        raise HistoryFileError(number, f"expected the fields id and event, found {sorted(fields)}")
    line_id, served = fields["id"], fields["event"]
    if not isinstance(served, dict):
        raise HistoryFileError(number, "event: expected a JSON object")
    missing = [name for name in _SUMMARY if name not in served]
    unknown = sorted(set(served) - set(_SUMMARY))
    if missing or unknown:
        raise HistoryFileError(number, f"event: missing fields {missing}, unknown fields {unknown}")
    for name, types in _SUMMARY.items():
        if not isinstance(served[name], types) or isinstance(served[name], bool):
            raise HistoryFileError(number, f"event: {name} is {served[name]!r}")
    if not _is_event_id(line_id) or line_id != served["id"]:
        raise HistoryFileError(number, f"id {line_id!r} is not a UUID or not the id of its event")
    start = _moment(number, served, "start")
    end = _moment(number, served, "end")
    return StoredEvent(line_id, local_seconds(start), local_seconds(end), kept_json(served))


def _moment(number: int, served: dict[str, Any], which: str) -> datetime:
    day, time = served[f"{which}_date"], served[f"{which}_time"]
    try:
        if not (_DATE.fullmatch(day) and _TIME.fullmatch(time)):
            raise ValueError("expected YYYY-MM-DD and HH:MM:SS")
        return datetime.fromisoformat(f"{day}T{time}")
    except ValueError as exc:
        raise HistoryFileError(number, f"event: {which} {day!r} {time!r} does not parse ({exc})") from None


def _is_event_id(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
