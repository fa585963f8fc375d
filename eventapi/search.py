"""Assembling a search answer: day blobs in, the finished JSON envelope out, never parsing stored JSON."""

from __future__ import annotations

from .query import TimeRange
from .store.model import select

ENVELOPE_HEAD = b'{"data":{"events":['
ENVELOPE_TAIL = b']},"error":null}'


def assemble(day_blobs: list[bytes], time_range: TimeRange) -> bytes:
    """Join the events of the range from day blobs into the spec's envelope, as bytes."""
    parts = [select(blob, time_range.starts_at, time_range.ends_at) for blob in day_blobs]
    return ENVELOPE_HEAD + b",".join(part for part in parts if part) + ENVELOPE_TAIL
