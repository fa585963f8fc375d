"""The search use case: a parsed range in, the finished JSON envelope out, as bytes."""

from __future__ import annotations

from datetime import tzinfo

from .query import TimeRange, parse_query
from .store.base import Store
from .store.model import select

ENVELOPE_HEAD = b'{"data":{"events":['
ENVELOPE_TAIL = b']},"error":null}'


def assemble(day_blobs: list[bytes], time_range: TimeRange) -> bytes:
    """Join the events of the range from day blobs into the spec's envelope, without parsing JSON."""
    parts = [select(blob, time_range.starts_at, time_range.ends_at) for blob in day_blobs]
    return ENVELOPE_HEAD + b",".join(part for part in parts if part) + ENVELOPE_TAIL


class Search:
    """Answers searches from a store."""

    def __init__(self, store: Store, zone: tzinfo) -> None:
        self._store = store
        self._zone = zone

    async def search(self, query_string: bytes) -> bytes:
        """The response body for a raw query string; raises InvalidParameter or StoreUnavailable."""
        time_range = parse_query(query_string, self._zone)
        day_read = await self._store.read_days(time_range.first_day, time_range.last_day)
        return assemble(day_read.day_blobs, time_range)
