"""Day blobs: one local start day's served events as pre-serialized JSON behind a small index.

Events are sorted by (start, id) and already joined as JSON array items, so a reader copies a
whole day without parsing it, or cuts the events of a boundary day out by their offsets.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from eventapi.events import StoredEvent

# magic, event count, earliest start, latest end (local seconds)
_HEADER = struct.Struct("<4sIqq")
# per event: start, end (local seconds), byte length of its JSON
_ENTRY = struct.Struct("<qqI")
_MAGIC = b"EAD1"


def encode_day(events: Iterable[StoredEvent]) -> bytes:
    """One day's blob: header, index, then the events' JSON joined by commas, by (start, id)."""
    ordered = sorted(events, key=lambda event: (event.start, event.id))
    if not ordered:
        raise ValueError("a day blob needs at least one event")
    header = _HEADER.pack(_MAGIC, len(ordered), ordered[0].start, max(event.end for event in ordered))
    index = b"".join(_ENTRY.pack(event.start, event.end, len(event.json)) for event in ordered)
    return header + index + b",".join(event.json for event in ordered)


def select(day_blob: bytes, starts_at: int | None, ends_at: int | None) -> bytes:
    """The comma-joined JSON of the day's events with start >= starts_at and end <= ends_at."""
    magic, count, earliest_start, latest_end = _HEADER.unpack_from(day_blob)
    if magic != _MAGIC:
        raise ValueError("not a day blob")
    body_at = _HEADER.size + count * _ENTRY.size
    if (starts_at is None or earliest_start >= starts_at) and (ends_at is None or latest_end <= ends_at):
        return day_blob[body_at:]  # the whole day is inside the range: copy it as it is
    picked = []
    offset = body_at
    for start, end, length in _ENTRY.iter_unpack(day_blob[_HEADER.size : body_at]):
        if (starts_at is None or start >= starts_at) and (ends_at is None or end <= ends_at):
            picked.append(day_blob[offset : offset + length])
        offset += length + 1
    return b",".join(picked)


def count_in(day_blob: bytes, starts_at: int | None, ends_at: int | None) -> int:
    """How many of the day's events `select` would pick, read from the index alone."""
    _, count, earliest_start, latest_end = _HEADER.unpack_from(day_blob)
    if (starts_at is None or earliest_start >= starts_at) and (ends_at is None or latest_end <= ends_at):
        return int(count)
    index = day_blob[_HEADER.size : _HEADER.size + count * _ENTRY.size]
    return sum(
        1
        for start, end, _ in _ENTRY.iter_unpack(index)
        if (starts_at is None or start >= starts_at) and (ends_at is None or end <= ends_at)
    )


def group_by_day(
    events: Iterable[StoredEvent], days: Iterable[int] | None = None
) -> dict[int, list[StoredEvent]]:
    """The events of the given days (all days when None), by day."""
    wanted = None if days is None else set(days)
    by_day: dict[int, list[StoredEvent]] = {}
    for event in events:
        if wanted is None or event.day in wanted:
            by_day.setdefault(event.day, []).append(event)
    return by_day


def rebuild_days(events: Iterable[StoredEvent], days: Iterable[int] | None = None) -> dict[int, bytes]:
    """Blobs for the given days (all days when None) from the full set of stored events."""
    return {day: encode_day(day_events) for day, day_events in group_by_day(events, days).items()}
