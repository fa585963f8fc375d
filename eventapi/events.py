"""Events: the record read from a feed (id and price rules), and the served form the stores keep."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import orjson

# Fixed for the life of the project: changing it changes every public event id.
EVENT_ID_NAMESPACE = uuid.UUID("5d0b7c1e-7a55-4c39-9a8e-0f6f3f6e2b11")

# Naive local wall-clock datetimes are compared as seconds since this origin: cheap integers.
_LOCAL_EPOCH = datetime(1970, 1, 1)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def event_id(base_plan_id: str, plan_id: str) -> str:
    """The public id of a plan: stable across refreshes, restarts and instances."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{base_plan_id}:{plan_id}"))


def kept_json(value: object) -> bytes:
    """`orjson.dumps` for bytes kept long, copied to their size.

    orjson returns its output in a buffer of at least 4 KiB that it does not shrink: 4 KiB per
    stored event instead of ~200 bytes (docs/capacity.md, "Found while measuring").
    """
    return bytes(memoryview(orjson.dumps(value)))


def local_seconds(moment: datetime) -> int:
    """Seconds from 1970-01-01T00:00:00 to a naive local wall-clock time, ignoring sub-seconds."""
    delta = moment - _LOCAL_EPOCH
    return delta.days * 86400 + delta.seconds


def day_of(local_secs: int) -> int:
    """Proleptic ordinal of the local day holding a local-seconds instant."""
    return local_secs // 86400 + _EPOCH_ORDINAL


def price_range(zones: Iterable[tuple[int, float]], sold_out: bool) -> tuple[float | None, float | None]:
    """Min and max price over the zones that still have capacity; both None when nothing is on sale."""
    if sold_out:
        return None, None
    prices = [price for capacity, price in zones if capacity > 0]
    if not prices:
        return None, None
    return min(prices), max(prices)


@dataclass(frozen=True, slots=True)
class Event:
    """One plan of the provider, as read from one feed."""

    id: str
    base_plan_id: str
    plan_id: str
    title: str
    start: datetime
    end: datetime
    min_price: float | None
    max_price: float | None
    online: bool

    @property
    def start_seconds(self) -> int:
        return local_seconds(self.start)

    @property
    def end_seconds(self) -> int:
        return local_seconds(self.end)

    def to_json(self) -> bytes:
        """The event as the API serves it (the spec's EventSummary), serialized once at merge time."""
        return kept_json(
            {
                "id": self.id,
                "title": self.title,
                "start_date": self.start.date().isoformat(),
                "start_time": self.start.time().isoformat("seconds"),
                "end_date": self.end.date().isoformat(),
                "end_time": self.end.time().isoformat("seconds"),
                "min_price": self.min_price,
                "max_price": self.max_price,
            }
        )


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
