"""The per-worker LRU: bounded by entries and by bytes, least recently used out first."""

from __future__ import annotations

from eventapi.http.response_cache import LruCache


def test_least_recently_used_entry_is_evicted_first() -> None:
    """Reading an entry makes it recent, so the popular ranges stay and the forgotten ones go."""
    cache: LruCache[str, str] = LruCache(max_entries=2, max_bytes=1000)
    cache.put("a", "A", 1)
    cache.put("b", "B", 1)
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("c", "C", 1)
    assert (cache.get("b"), cache.get("a"), cache.get("c")) == (None, "A", "C")
    assert cache.evictions == 1


def test_byte_bound_evicts_until_the_total_fits() -> None:
    """The byte bound caps memory whatever the entry count allows."""
    cache: LruCache[int, bytes] = LruCache(max_entries=100, max_bytes=10)
    for key in range(5):
        cache.put(key, b"x" * 4, 4)
    assert len(cache) == 2 and cache.size_bytes == 8 and cache.evictions == 3


def test_flood_of_distinct_keys_never_grows_past_the_bounds() -> None:
    """A client inventing a new range per request cannot grow memory without bound."""
    cache: LruCache[int, bytes] = LruCache(max_entries=50, max_bytes=10_000)
    for key in range(10_000):
        cache.put(key, b"x" * 300, 300)
        assert len(cache) <= 50 and cache.size_bytes <= 10_000


def test_value_larger_than_the_byte_bound_is_not_kept() -> None:
    """An entry over the byte bound is not kept: it would evict every other entry and still not fit."""
    cache: LruCache[str, bytes] = LruCache(max_entries=10, max_bytes=10)
    cache.put("small", b"s", 1)
    cache.put("huge", b"h" * 11, 11)
    assert cache.get("huge") is None and cache.get("small") == b"s"


def test_replacing_a_key_keeps_the_byte_count_right() -> None:
    """A replaced entry's bytes are given back, or the bound would count answers that are gone."""
    cache: LruCache[str, bytes] = LruCache(max_entries=10, max_bytes=100)
    cache.put("a", b"x" * 40, 40)
    cache.put("a", b"x" * 10, 10)
    assert cache.size_bytes == 10 and len(cache) == 1


def test_hits_and_misses_are_counted() -> None:
    """The counts /status and /metrics show are the lookups that happened."""
    cache: LruCache[str, str] = LruCache(max_entries=10, max_bytes=100)
    cache.get("a")
    cache.put("a", "A", 1)
    cache.get("a")
    cache.get("a")
    assert (cache.hits, cache.misses) == (2, 1)
