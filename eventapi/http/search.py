"""GET /search over HTTP: query memo, the worker's LRU, ETags and 304s in front of the store.

Responses are cached finished, headers included (docs/decisions/003-per-worker-response-cache.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from eventapi.days import select
from eventapi.http.asgi import Scope
from eventapi.http.day_copy import DayCache
from eventapi.http.generation import UNKNOWN, GenerationWatcher
from eventapi.http.response_cache import LruCache
from eventapi.http.responses import Response, response
from eventapi.query import TimeRange, parse_query
from eventapi.store import Version

# Raw query strings already parsed, so a hit skips the date parsing; cleared when full, which
# bounds it whatever strings a client invents.
_MAX_MEMOIZED_QUERIES = 16_384
# On answers given from this worker's memory while the store cannot be reached.
STALE_HEADER = (b"x-eventapi-stale", b"1")
ENVELOPE_HEAD = b'{"data":{"events":['
ENVELOPE_TAIL = b']},"error":null}'


def assemble(day_blobs: list[bytes], time_range: TimeRange) -> bytes:
    """Join the events of the range from day blobs into the API's envelope, as bytes, parsing nothing."""
    parts = [select(blob, time_range.starts_at, time_range.ends_at) for blob in day_blobs]
    return ENVELOPE_HEAD + b",".join(part for part in parts if part) + ENVELOPE_TAIL


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A finished search response and its 304, for one range at one version of the store."""

    version: Version
    etag: bytes
    ok: Response
    not_modified: Response
    stale: Response  # `ok` marked as served while the store cannot be reached


def etag_for(version: Version, time_range: TimeRange) -> bytes:
    """Strong validator: the same version (generation and epoch) and the same normalized range mean
    the same bytes; a generation number issued again after a lost history comes with another epoch."""
    starts = "" if time_range.starts_at is None else time_range.starts_at
    ends = "" if time_range.ends_at is None else time_range.ends_at
    return f'"g{version.generation}-{version.epoch}.{starts}.{ends}"'.encode()


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """If-None-Match uses weak comparison (RFC 9110 §13.1.2): W/ prefixes are ignored; * matches."""
    if if_none_match.strip() == b"*":
        return True
    return any(candidate.strip().removeprefix(b"W/") == etag for candidate in if_none_match.split(b","))


def if_none_match_of(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return bytes(value)
    return None


class SearchEndpoint:
    """The handler behind /search and /events."""

    def __init__(
        self,
        days: DayCache,
        tz: tzinfo,
        watcher: GenerationWatcher,
        cache: LruCache[TimeRange, CachedAnswer],
        max_age: int,
    ) -> None:
        self.days = days
        self._tz = tz
        self._watcher = watcher
        self.cache = cache
        self._cache_control = b"public, max-age=%d" % max_age
        self._ranges: dict[bytes, TimeRange] = {}

    def time_range(self, query_string: bytes) -> TimeRange:
        """Parse (or recall) a query string; InvalidParameter for a bad one."""
        time_range = self._ranges.get(query_string)
        if time_range is None:
            time_range = parse_query(query_string, self._tz)
            if len(self._ranges) >= _MAX_MEMOIZED_QUERIES:
                self._ranges.clear()
            self._ranges[query_string] = time_range
        return time_range

    async def __call__(self, scope: Scope) -> Response:
        time_range = self.time_range(scope["query_string"])
        if_none_match = if_none_match_of(scope)
        version = self._watcher.version
        cached = self.cache.get(time_range)
        if cached is None or cached.version != version:
            if if_none_match is not None and version.generation != UNKNOWN:
                etag = etag_for(version, time_range)
                if etag_matches(if_none_match, etag):
                    return self._not_modified(etag)  # revalidated without touching the store
            cached = await self._fill(time_range)
        if if_none_match is not None and etag_matches(if_none_match, cached.etag):
            return cached.not_modified
        return cached.ok if self._watcher.store_reachable else cached.stale

    async def _fill(self, time_range: TimeRange) -> CachedAnswer:
        day_read = await self.days.read(time_range, self._watcher.version)
        version, body = day_read.version, assemble(day_read.day_blobs, time_range)
        self._watcher.observe(version)
        etag = etag_for(version, time_range)
        headers = ((b"cache-control", self._cache_control), (b"etag", etag))
        answer = CachedAnswer(
            version, etag, response(200, body, headers), self._not_modified(etag),
            response(200, body, (*headers, STALE_HEADER)),
        )  # fmt: skip
        if version == self._watcher.version:
            self.cache.put(time_range, answer, len(body))
        return answer

    def _not_modified(self, etag: bytes) -> Response:
        # No content-length: in a 304 it would have to be the 200 body's length (RFC 9110 §8.6).
        return Response(304, b"", [(b"cache-control", self._cache_control), (b"etag", etag)])
