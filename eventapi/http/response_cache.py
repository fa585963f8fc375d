"""A per-worker LRU bounded by entries and by bytes, counting hits, misses and evictions."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """Least-recently-used entries go first once either bound is passed; counters are plain ints.

    Values and their sizes are kept apart, so no (value, size) pair wraps a cached value: the GC
    would have to look at the pair again once it stopped tracking the value (decision 012).
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._sizes: dict[K, int] = {}
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def peek(self, key: K) -> V | None:
        """The value under `key` without counting a look-up or moving it up."""
        return self._entries.get(key)

    def put(self, key: K, value: V, size: int) -> None:
        """Insert or replace; a value larger than the byte bound is not kept at all."""
        if self._entries.pop(key, None) is not None:
            self.size_bytes -= self._sizes.pop(key)
        if size > self.max_bytes:
            return
        self._entries[key] = value
        self._sizes[key] = size
        self.size_bytes += size
        while len(self._entries) > self.max_entries or self.size_bytes > self.max_bytes:
            evicted, _ = self._entries.popitem(last=False)
            self.size_bytes -= self._sizes.pop(evicted)
            self.evictions += 1
