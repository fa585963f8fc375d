"""Day blobs: one local start day's served events as pre-serialized JSON behind a small index.

Events are sorted by (start, id) and already joined as JSON array items, so a reader copies a
whole day without parsing it, or cuts the events of a boundary day out by their offsets.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eventapi.events import StoredEvent

# magic, event count, earliest start, latest end (local seconds)
_HEADER = struct.Struct("<4sIqq")
# per event: start, end (local seconds), byte length of its JSON
_ENTRY = struct.Struct("<qqI")
_MAGIC = b"EAD1"
# Comma-joinable JSON of events: a copy, or a view into a JoinedDays' bodies.
Part = bytes | memoryview


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
    return _pick(day_blob[_HEADER.size : body_at], day_blob, body_at, starts_at, ends_at)


def select_each(day_blobs: Iterable[bytes], starts_at: int | None, ends_at: int | None) -> list[bytes]:
    """`select` of each blob, the days with no event in range left out: comma-joinable parts."""
    return [part for part in (select(blob, starts_at, ends_at) for blob in day_blobs) if part]


def _pick(
    index: bytes, body: bytes | memoryview, offset: int, starts_at: int | None, ends_at: int | None
) -> bytes:
    """The events of one day's index in range, cut from `body`, whose first event begins at `offset`."""
    picked = []
    for start, end, length in _ENTRY.iter_unpack(index):
        if (starts_at is None or start >= starts_at) and (ends_at is None or end <= ends_at):
            picked.append(body[offset : offset + length])
        offset += length + 1
    return b",".join(picked)


@dataclass(frozen=True, slots=True)
class JoinedDays:
    """Many days' blobs taken apart once: their bodies joined by commas into one bytes, so a run of
    days wholly inside a range is a single slice of it, and their indexes and bounds kept apart.

    A miss over a month then costs two partial days and one copy, not thirty blob reads
    (docs/decisions/016-lean-hit-path.md). Lists are parallel, one item per day.
    """

    indexes: list[bytes]  # each day's index: (start, end, JSON length) per event
    earliest_starts: list[int]
    latest_ends: list[int]
    counts: list[int]
    body_starts: list[int]  # where each day's first event begins in `bodies`
    body_ends: list[int]  # where its last one ends; the next day's begins one comma later
    bodies: memoryview  # of one bytes: a run of days is cut from it without a copy


def join_days(day_blobs: Sequence[bytes]) -> JoinedDays:
    """Day blobs (in day order) as JoinedDays; ValueError for anything that is not a day blob."""
    indexes, earliest_starts, latest_ends, counts, body_starts, body_ends = [], [], [], [], [], []
    bodies: list[memoryview] = []  # views: the one join copies each body once
    position = 0
    for blob in day_blobs:
        magic, count, earliest_start, latest_end = _HEADER.unpack_from(blob)
        if magic != _MAGIC:
            raise ValueError("not a day blob")
        body_at = _HEADER.size + count * _ENTRY.size
        indexes.append(blob[_HEADER.size : body_at])
        earliest_starts.append(earliest_start)
        latest_ends.append(latest_end)
        counts.append(count)
        body_starts.append(position)
        position += len(blob) - body_at
        body_ends.append(position)
        position += 1  # the comma
        bodies.append(memoryview(blob)[body_at:])
    joined = memoryview(b",".join(bodies))
    return JoinedDays(indexes, earliest_starts, latest_ends, counts, body_starts, body_ends, joined)


def select_joined(
    joined: JoinedDays, low: int, high: int, starts_at: int | None, ends_at: int | None
) -> list[Part]:
    """The comma-joinable JSON parts of days low..high-1 in range: each run of whole days one view."""
    parts: list[Part] = []
    earliest, latest, bodies = joined.earliest_starts, joined.latest_ends, joined.bodies
    run_from = -1  # the first day of the current run of whole days, -1 outside one
    for day in range(low, high):
        if (starts_at is None or earliest[day] >= starts_at) and (ends_at is None or latest[day] <= ends_at):
            if run_from < 0:
                run_from = day
            continue
        if run_from >= 0:
            parts.append(bodies[joined.body_starts[run_from] : joined.body_ends[day - 1]])
            run_from = -1
        part = _pick(joined.indexes[day], bodies, joined.body_starts[day], starts_at, ends_at)
        if part:
            parts.append(part)
    if run_from >= 0:
        parts.append(bodies[joined.body_starts[run_from] : joined.body_ends[high - 1]])
    return parts


def count_joined(joined: JoinedDays, low: int, high: int, starts_at: int | None, ends_at: int | None) -> int:
    """How many events select_joined would give, read from the bounds and indexes alone."""
    events = 0
    for day in range(low, high):
        if (starts_at is None or joined.earliest_starts[day] >= starts_at) and (
            ends_at is None or joined.latest_ends[day] <= ends_at
        ):
            events += joined.counts[day]
        else:
            events += _count_index(joined.indexes[day], starts_at, ends_at)
    return events


def count_in(day_blob: bytes, starts_at: int | None, ends_at: int | None) -> int:
    """How many of the day's events `select` would pick, read from the index alone."""
    _, count, earliest_start, latest_end = _HEADER.unpack_from(day_blob)
    if (starts_at is None or earliest_start >= starts_at) and (ends_at is None or latest_end <= ends_at):
        return int(count)
    return _count_index(day_blob[_HEADER.size : _HEADER.size + count * _ENTRY.size], starts_at, ends_at)


def _count_index(index: bytes, starts_at: int | None, ends_at: int | None) -> int:
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
