"""GET /search over HTTP: query memo, the worker's LRU of finished answers per encoding, ETags and 304s.

Answers are cached finished (docs/decisions/003-per-worker-response-cache.md), as flat tuples the
cyclic GC stops tracking (decision 012); an encoding is compressed once, when first asked for (013).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import tzinfo

from eventapi.days import Part, select_each
from eventapi.errors import InvalidParameter
from eventapi.http import gzip_codec
from eventapi.http.asgi import Scope
from eventapi.http.day_copy import DayCache
from eventapi.http.generation import UNKNOWN, GenerationWatcher
from eventapi.http.negotiation import IDENTITY, choose_encoding
from eventapi.http.response_cache import LruCache
from eventapi.http.responses import Headers, Response
from eventapi.query import TimeRange, parse_query

# Raw query strings and Accept-Encoding values already read, so a hit parses nothing; each memo is
# cleared when full, which bounds it whatever strings clients invent.
_MAX_MEMOIZED_QUERIES = 16_384
_MAX_MEMOIZED_ENCODINGS = 1_024
# gzip only (http/gzip_codec.py); below MIN_COMPRESSED_BYTES a gzip answer saves too little to pay
# for itself (docs/decisions/013-pre-compressed-answers.md). nginx's gzip_min_length is the same.
ENCODINGS = ("gzip",)
MIN_COMPRESSED_BYTES = 512
# In the ETag of each encoding, so two encodings, or two builds compressing differently, never share one.
_ETAG_SUFFIX = {IDENTITY: "", "gzip": f".gz-{gzip_codec.CODEC}"}
# On answers given from this worker's memory while the store cannot be reached.
STALE_HEADER = (b"x-eventapi-stale", b"1")
VARY_HEADER = (b"vary", b"accept-encoding")
ENVELOPE_HEAD = b'{"data":{"events":['
ENVELOPE_TAIL = b']},"error":null}'

# The normalized range, (starts_at, ends_at) in local seconds: equal ranges are equal queries.
RangeKey = tuple[int | None, int | None]
# An LRU entry: one flat tuple of atoms, which the GC stops tracking the first time it looks at it
# (a nested one takes a look per level; decision 012): the store's generation and epoch, then per
# encoding its etag, body and content-length value; gzip's are empty until first asked for.
Entry = tuple[int, str, bytes, bytes, bytes, bytes, bytes, bytes]
_CONTENT_TYPE = (b"content-type", b"application/json")
_GZIP = (b"content-encoding", b"gzip")


def envelope(parts: Sequence[Part]) -> bytes:
    """Comma-joinable parts of events' JSON in the API's envelope, as bytes, parsing nothing.

    One join: the answer's bytes are copied once, however many parts (and views) it is made of.
    """
    pieces: list[Part] = [ENVELOPE_HEAD]
    for part in parts:
        pieces += (part, b",")
    if parts:
        pieces.pop()  # the comma after the last event
    pieces.append(ENVELOPE_TAIL)
    return b"".join(pieces)


def assemble(day_blobs: list[bytes], time_range: TimeRange) -> bytes:
    """The answer for a range from its days' blobs as a store reads them."""
    return envelope(select_each(day_blobs, time_range.starts_at, time_range.ends_at))


def etag_for(version: tuple[int, str], key: RangeKey, encoding: str = IDENTITY) -> bytes:
    """Strong validator: the same version (generation and epoch), normalized range and encoding mean
    the same bytes; a generation number issued again after a lost history comes with another epoch."""
    generation, epoch = version
    starts, ends = ("" if bound is None else bound for bound in key)
    return f'"g{generation}-{epoch}.{starts}.{ends}{_ETAG_SUFFIX[encoding]}"'.encode()


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """If-None-Match uses weak comparison (RFC 9110 §13.1.2): W/ prefixes are ignored; * matches."""
    if if_none_match.strip() == b"*":
        return True
    return any(candidate.strip().removeprefix(b"W/") == etag for candidate in if_none_match.split(b","))


class SearchEndpoint:
    """The handler behind /search and /events."""

    def __init__(
        self,
        days: DayCache,
        tz: tzinfo,
        watcher: GenerationWatcher,
        cache: LruCache[RangeKey, Entry],
        max_age: int,
        max_events: int = 0,
        on_cached: Callable[[], None] = lambda: None,
    ) -> None:
        self.days = days
        self._tz = tz
        self._watcher = watcher
        self.cache = cache
        self._cache_control = (b"cache-control", b"public, max-age=%d" % max_age)
        self._ranges: dict[bytes, RangeKey] = {}
        self._encodings: dict[bytes | None, str] = {}
        self._max_events = max_events  # 0: no cap on the events of one answer
        self._on_cached = on_cached  # told of each answer cached (the worker's young GC collections)

    def range_key(self, query_string: bytes) -> RangeKey:
        """Parse (or recall) a query string; InvalidParameter for a bad one."""
        key = self._ranges.get(query_string)
        if key is None:
            time_range = parse_query(query_string, self._tz)
            key = (time_range.starts_at, time_range.ends_at)
            if len(self._ranges) >= _MAX_MEMOIZED_QUERIES:
                self._ranges.clear()
            self._ranges[query_string] = key
        return key

    def encoding(self, accept_encoding: bytes | None) -> str:
        """The encoding an Accept-Encoding value asks for among ours (or recall it)."""
        encoding = self._encodings.get(accept_encoding)
        if encoding is None:
            encoding = choose_encoding(accept_encoding, ENCODINGS)
            if len(self._encodings) >= _MAX_MEMOIZED_ENCODINGS:
                self._encodings.clear()
            self._encodings[accept_encoding] = encoding
        return encoding

    def __call__(self, scope: Scope) -> Response | Awaitable[Response]:
        """A finished answer when the LRU holds the range at the version served (a hit awaits
        nothing); else the coroutine that reads the store (InvalidParameter for a bad query)."""
        query_string = scope["query_string"]
        key = self._ranges.get(query_string)  # the memos are read here first: a hit calls nothing more
        if key is None:
            key = self.range_key(query_string)
        if_none_match = accept_encoding = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = bytes(value)
            elif name == b"accept-encoding":
                accept_encoding = bytes(value)
        encoding = self._encodings.get(accept_encoding)
        if encoding is None:
            encoding = self.encoding(accept_encoding)
        version = self._watcher.version
        entry = self.cache.get(key)
        if entry is None or entry[0] != version.generation or entry[1] != version.epoch:
            return self._miss(key, encoding, if_none_match)
        return self._answer(key, entry, encoding, if_none_match)

    async def _miss(self, key: RangeKey, encoding: str, if_none_match: bytes | None) -> Response:
        version = self._watcher.version
        if if_none_match is not None and version.generation != UNKNOWN:
            # Revalidated without touching the store. Only the etag of the encoding asked for can
            # match: a client holds a gzip etag only for an answer large enough to compress.
            etag = etag_for(version, key, encoding)
            if etag_matches(if_none_match, etag):
                return self._not_modified(etag)
        return self._answer(key, await self._fill(key), encoding, if_none_match)

    def _answer(self, key: RangeKey, entry: Entry, encoding: str, if_none_match: bytes | None) -> Response:
        """The 200 (or 304) of an entry in the encoding asked for, compressing it the first time."""
        if encoding != IDENTITY and not entry[5]:
            entry = self._compressed(key, entry)  # unchanged when too small to compress
        if encoding == IDENTITY or not entry[5]:
            etag, body, length, coding = entry[2], entry[3], entry[4], None
        else:
            etag, body, length, coding = entry[5], entry[6], entry[7], _GZIP
        if if_none_match is not None and etag_matches(if_none_match, etag):
            return self._not_modified(etag)
        # Built per answer from the entry's bytes (a few hundred ns), so the entry stays flat.
        cache_control, etag_header = self._cache_control, (b"etag", etag)
        headers: Headers = (
            (_CONTENT_TYPE, (b"content-length", length), cache_control, etag_header, VARY_HEADER)
            if coding is None
            else (_CONTENT_TYPE, (b"content-length", length), cache_control, etag_header, VARY_HEADER, coding)
        )
        return 200, headers if self._watcher.store_reachable else (*headers, STALE_HEADER), body

    async def _fill(self, key: RangeKey) -> Entry:
        time_range = TimeRange(*key)
        found = await self.days.read(time_range, self._watcher.version)
        if self._max_events and found.count() > self._max_events:
            # Refused before the answer is assembled.
            raise InvalidParameter(
                f"the range holds more than {self._max_events} events, the most one answer gives "
                "(EVENTAPI_MAX_EVENTS_PER_ANSWER): narrow it with starts_at and ends_at, "
                "or ask for it in parts"
            )
        version, body = found.version, envelope(found.parts())
        self._watcher.observe(version)
        etag = etag_for(version, key)
        entry: Entry = (version.generation, version.epoch, etag, body, b"%d" % len(body), b"", b"", b"")
        if version == self._watcher.version:
            self.cache.put(key, entry, len(body))
            self._on_cached()
        return entry

    def _compressed(self, key: RangeKey, entry: Entry) -> Entry:
        """The entry with its gzip answer filled in (and cached); unchanged when too small for one."""
        generation, epoch, etag, body, length, _, _, _ = entry
        if len(body) < MIN_COMPRESSED_BYTES:
            return entry
        compressed = gzip_codec.compress(body)
        gzip_etag = etag_for((generation, epoch), key, "gzip")
        grown: Entry = (generation, epoch, etag, body, length, gzip_etag, compressed, b"%d" % len(compressed))
        if self.cache.peek(key) is entry:  # in place of the entry it grew from, its byte count too
            self.cache.put(key, grown, len(body) + len(compressed))
            self._on_cached()
        return grown

    def _not_modified(self, etag: bytes) -> Response:
        # No content-length: in a 304 it would have to be the 200 body's length (RFC 9110 §8.6).
        return 304, (self._cache_control, (b"etag", etag), VARY_HEADER), b""
