"""The pure core the stores share: the history rule (FeedMerge) and per-day blobs."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timedelta

import orjson

from eventapi.days import encode_day, rebuild_days, select
from eventapi.events import Event, StoredEvent, event_id
from eventapi.history import Changes, FeedMerge


def merge(stored: dict[str, StoredEvent], feed: list[Event]) -> Changes:
    """A whole feed folded in one slice, as the stores do it slice by slice."""
    feed_merge = FeedMerge(stored)
    feed_merge.add(feed)
    return feed_merge.changes()


def event(
    base: str,
    plan: str = "1",
    start: datetime = datetime(2021, 7, 1, 20),
    minutes: int = 60,
    online: bool = True,
    title: str = "T",
    price: float | None = 10.0,
) -> Event:
    return Event(
        event_id(base, plan),
        base,
        plan,
        title,
        start,
        start + timedelta(minutes=minutes),
        price,
        price,
        online,
    )


def stored(*events: Event) -> dict[str, StoredEvent]:
    return {e.id: StoredEvent.from_event(e) for e in events}


def test_offline_only_events_are_never_kept() -> None:
    """An event never seen online does not enter the store."""
    assert merge({}, [event("1", online=False)]).events == {}


def test_event_seen_online_once_follows_later_offline_values() -> None:
    """Once online, always served, with the latest values even when they come from an offline plan."""
    first = event("1", title="old")
    later = event("1", title="new", online=False)
    changes = merge(stored(first), [later])
    assert orjson.loads(changes.events[first.id].json)["title"] == "new"


def test_unchanged_feed_changes_nothing() -> None:
    """The same feed twice is a no-op: no events and no days to rewrite."""
    feed = [event("1"), event("2")]
    changes = merge(stored(*feed), feed)
    assert changes.events == {} and changes.days == frozenset()


def test_moved_event_rewrites_its_old_and_new_day() -> None:
    """An event whose start moves to another day leaves the old day's blob and joins the new one."""
    before = event("1", start=datetime(2021, 7, 1, 20))
    after = event("1", start=datetime(2021, 7, 5, 20))
    changes = merge(stored(before), [after])
    assert changes.days == {datetime(2021, 7, 1).toordinal(), datetime(2021, 7, 5).toordinal()}


def test_later_duplicate_in_one_feed_wins() -> None:
    """If the feed repeats a plan, the last occurrence gives the values."""
    changes = merge({}, [event("1", title="first"), event("1", title="second", online=False)])
    assert orjson.loads(changes.events[event_id("1", "1")].json)["title"] == "second"


def test_day_blob_selection_filters_boundary_days_only_by_the_index() -> None:
    """select() copies a whole day that is inside the range and cuts the events of a boundary day."""
    events = [StoredEvent.from_event(event(str(n), start=datetime(2021, 7, 1, 10 + n))) for n in range(4)]
    blob = encode_day(events)
    everything = select(blob, None, None)
    assert orjson.loads(b"[" + everything + b"]") == [orjson.loads(e.json) for e in events]
    start_cut = events[2].start
    picked = orjson.loads(b"[" + select(blob, start_cut, None) + b"]")
    assert [p["id"] for p in picked] == [events[2].id, events[3].id]
    end_cut = events[1].end
    picked = orjson.loads(b"[" + select(blob, None, end_cut) + b"]")
    assert [p["id"] for p in picked] == [events[0].id, events[1].id]
    assert select(blob, events[3].start + 1, None) == b""


def test_day_blob_orders_events_by_start_then_id() -> None:
    """Ties on start are broken by id, so the order is stable across instances."""
    same_start = [StoredEvent.from_event(event(str(n))) for n in range(5)]
    ids = [p["id"] for p in orjson.loads(b"[" + select(encode_day(same_start), None, None) + b"]")]
    assert ids == sorted(ids)


def test_rebuild_days_groups_by_local_start_day() -> None:
    """An event that crosses midnight belongs to the day it starts."""
    late = StoredEvent.from_event(event("1", start=datetime(2021, 7, 1, 23, 30), minutes=120))
    assert list(rebuild_days([late])) == [datetime(2021, 7, 1).toordinal()]


def test_stored_event_round_trips_through_its_json() -> None:
    """What the stores persist (the served JSON) is enough to rebuild the record."""
    original = StoredEvent.from_event(event("1", start=datetime(2021, 12, 31, 23, 59, 59)))
    assert StoredEvent.from_json(original.json) == original


def test_an_event_keeps_its_json_at_its_size_not_in_a_spare_buffer() -> None:
    """A store holds one JSON per event for good: orjson's 4 KiB buffer each would be 20 times it."""
    events = [event(f"plan-{n}") for n in range(2_000)]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        kept = [each.to_json() for each in events]
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    json_bytes = sum(len(each) for each in kept) / len(kept)
    # A bytes object's header is ~33 bytes; list slots 8; allocator rounding a little more.
    assert (after - before) / len(kept) < json_bytes + 128
