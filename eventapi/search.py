"""The search use case: a range in, the finished JSON envelope out, as bytes, never parsing stored JSON."""

from __future__ import annotations

from .query import TimeRange
from .store.base import DayRead, Store
from .store.model import select

ENVELOPE_HEAD = b'{"data":{"events":['
ENVELOPE_TAIL = b']},"error":null}'


def assemble(day_blobs: list[bytes], time_range: TimeRange) -> bytes:
    """Join the events of the range from day blobs into the spec's envelope, as bytes."""
    parts = [select(blob, time_range.starts_at, time_range.ends_at) for blob in day_blobs]
    return ENVELOPE_HEAD + b",".join(part for part in parts if part) + ENVELOPE_TAIL


async def read_range(store: Store, time_range: TimeRange) -> tuple[int, bytes]:
    """The generation read and the response body for a range, from one consistent store read."""
    day_read: DayRead = await store.read_days(time_range.first_day, time_range.last_day)
    return day_read.generation, assemble(day_read.day_blobs, time_range)
