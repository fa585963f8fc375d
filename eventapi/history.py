"""The history rules: a feed folds into the stored events (kept once seen online, latest values win);
a backup restores into them (missing events added; the backup's values win only when asked)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from eventapi.events import Event, StoredEvent


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
        return _changes(self._stored, self._changed)


def _changes(stored: Mapping[str, StoredEvent], changed: dict[str, StoredEvent]) -> Changes:
    """The changed events with the days they leave and the days they land on."""
    days = set()
    for event_id, changed_event in changed.items():
        days.add(changed_event.day)
        previous = stored.get(event_id)
        if previous is not None:
            days.add(previous.day)
    return Changes(changed, frozenset(days))


def merge(stored: Mapping[str, StoredEvent], feed: Iterable[Event]) -> Changes:
    """Fold a whole feed into the stored events at once."""
    feed_merge = FeedMerge(stored)
    feed_merge.add(feed)
    return feed_merge.changes()


def restore(stored: Mapping[str, StoredEvent], backup: Iterable[StoredEvent], *, replace: bool) -> Changes:
    """The events of a backup the store lacks; with `replace`, also those whose stored values differ.

    Events the store holds and the backup lacks stay: a restore adds to history, it never deletes.
    """
    changed: dict[str, StoredEvent] = {}
    for event in backup:
        previous = stored.get(event.id)
        if previous is None or (replace and previous.json != event.json):
            changed[event.id] = event
        else:
            changed.pop(event.id, None)  # an earlier duplicate in this backup is superseded
    return _changes(stored, changed)
