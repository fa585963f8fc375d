"""Pure core of the stores: merging a feed into stored events and encoding per-day blobs.

A day blob holds one local start day's served events, sorted by (start, id), already joined
as JSON array items, behind a small binary index so that a reader can copy the whole day
without parsing it, or cut out the events of a boundary day by their offsets.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

import orjson

from ..events import Event, local_seconds

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# magic, event count, earliest start, latest end (local seconds)
_HEADER = struct.Struct("<4sIqq")
# per event: start, end (local seconds), byte length of its JSON
_ENTRY = struct.Struct("<qqI")
_MAGIC = b"EAD1"


def day_of(local_secs: int) -> int:
    """Proleptic ordinal of the local day holding a local-seconds instant."""
    return local_secs // 86400 + _EPOCH_ORDINAL


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A served event as the stores keep it: its JSON and the numbers needed to place it."""

    id: str
    start: int
    end: int
    json: bytes

    @property
    def day(self) -> int:
        return day_of(self.start)

    @classmethod
    def from_event(cls, event: Event) -> StoredEvent:
        return cls(event.id, event.start_seconds, event.end_seconds, event.to_json())

    @classmethod
    def from_json(cls, raw: bytes) -> StoredEvent:
        """Rebuild from the stored JSON (at load and merge time, never on the read path)."""
        fields = orjson.loads(raw)
        start = datetime.fromisoformat(f"{fields['start_date']}T{fields['start_time']}")
        end = datetime.fromisoformat(f"{fields['end_date']}T{fields['end_time']}")
        return cls(fields["id"], local_seconds(start), local_seconds(end), raw)


@dataclass(frozen=True, slots=True)
class Changes:
    """What a feed changes: the new or updated events, and the days whose blobs must be rebuilt."""

    events: dict[str, StoredEvent]
    days: frozenset[int]


class FeedMerge:
    """Folds a feed into stored events a slice at a time, so a caller can yield between slices.

    Rules: latest values win, an event is kept once seen online, offline-only events never are.
    """

    def __init__(self, stored: Mapping[str, StoredEvent]) -> None:
        self._stored = stored
        self._changed: dict[str, StoredEvent] = {}

    def add(self, feed_slice: Iterable[Event]) -> None:
        stored, changed = self._stored, self._changed
        for event in feed_slice:
            # Stored means seen online at least once: from then on it follows every later value.
            if not (event.online or event.id in stored or event.id in changed):
                continue
            candidate = StoredEvent.from_event(event)
            previous = stored.get(event.id)
            if previous is not None and previous.json == candidate.json:
                changed.pop(event.id, None)  # an earlier duplicate in this feed is superseded
            else:
                changed[event.id] = candidate

    def changes(self) -> Changes:
        days = set()
        for event_id, changed_event in self._changed.items():
            days.add(changed_event.day)
            previous = self._stored.get(event_id)
            if previous is not None:
                days.add(previous.day)
        return Changes(self._changed, frozenset(days))


def merge(stored: Mapping[str, StoredEvent], feed: Iterable[Event]) -> Changes:
    """Fold a whole feed into the stored events at once."""
    feed_merge = FeedMerge(stored)
    feed_merge.add(feed)
    return feed_merge.changes()


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
