"""Fetching the provider's feed over HTTP: a total timeout, a size cap, bounded retries."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import tzinfo

import aiohttp

from eventapi.errors import FeedError, FeedRefused
from eventapi.refresh.work import ParsedFeed
from eventapi.refresh.xml_feed import FeedParser

_CHUNK_BYTES = 64 * 1024
# Parsing 16 KiB is about half a millisecond of CPU: a search waits no longer than that.
_PARSE_SLICE_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by a number of attempts."""

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, failed_attempts: int, rng: random.Random) -> float:
        """Seconds to wait after the n-th failure: full jitter over an exponential ceiling."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (failed_attempts - 1))
        return ceiling * (0.5 + rng.random() / 2)

    def worst_case(self) -> float:
        """Longest total backoff, used to size the refresh lock's lifetime."""
        return sum(min(self.max_delay, self.base_delay * 2.0**n) for n in range(self.attempts - 1))


class _Transient(Exception):
    """A failure worth another attempt: network error, timeout, or a 5xx answer."""


class ProviderFeed:
    """The provider's feed over aiohttp; the session opens with the first fetch, on its loop."""

    def __init__(
        self,
        url: str,
        tz: tzinfo,
        *,
        timeout: float,
        max_bytes: int,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self._tz = tz
        self._timeout = timeout
        self._max_bytes = max_bytes
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self) -> ParsedFeed:
        """One feed, parsed; FeedError once the attempts are spent or on an answer not worth retrying."""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return await self._fetch_once()
            except _Transient as exc:
                if attempt == self.retry.attempts:
                    raise FeedError(f"provider failed {attempt} times, last: {exc}") from None
                await self._sleep(self.retry.delay(attempt, self._rng))
        raise AssertionError("unreachable")

    async def _fetch_once(self) -> ParsedFeed:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"accept": "application/xml, text/xml;q=0.9"},
            )
        try:
            async with self._session.get(self.url) as response:
                if response.status >= 500:
                    raise _Transient(f"HTTP {response.status} from {self.url}")
                if response.status != 200:
                    raise FeedError(f"provider answered HTTP {response.status} at {self.url}")
                if response.content_length is not None and response.content_length > self._max_bytes:
                    raise FeedRefused(
                        f"feed of {response.content_length} bytes is over the cap of {self._max_bytes}"
                    )
                parser = FeedParser(self._tz, self._max_bytes)
                async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                    # Chunks already buffered come back without a pause: parse in slices and
                    # yield between them, so searches on this loop never wait long on a big feed.
                    for start in range(0, len(chunk), _PARSE_SLICE_BYTES):
                        parser.feed(chunk[start : start + _PARSE_SLICE_BYTES])
                        await asyncio.sleep(0)
                return parser.close()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Transient(f"{exc.__class__.__name__}: {exc}".rstrip(": ")) from None
