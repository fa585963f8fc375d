"""Fetching from a real HTTP provider (the simulator): timeouts, size cap, and which failures retry."""

from __future__ import annotations

import zoneinfo
from collections.abc import AsyncIterator

import pytest

from eventapi.errors import FeedError, FeedRefused
from eventapi.refresh.provider import ProviderFeed, RetryPolicy
from eventapi.sim import Fault, SimServer

MADRID = zoneinfo.ZoneInfo("Europe/Madrid")


class RecordedSleep:
    """Backoff without waiting: records the delays asked for (retries switched to instant in tests)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleep() -> RecordedSleep:
    return RecordedSleep()


@pytest.fixture
async def feed(sim: SimServer, sleep: RecordedSleep) -> AsyncIterator[ProviderFeed]:
    provider = ProviderFeed(
        sim.url,
        MADRID,
        timeout=1.0,
        max_bytes=1_000_000,
        retry=RetryPolicy(attempts=3, base_delay=0.5),
        sleep=sleep,
    )
    yield provider
    await provider.close()


async def test_fetch_parses_the_providers_answer(feed: ProviderFeed) -> None:
    """A healthy provider's answer arrives over HTTP and parses to its three base plans."""
    parsed = await feed.fetch()
    assert {e.base_plan_id for e in parsed.events} == {"291", "322", "1591"}


async def test_5xx_is_retried_with_growing_jittered_backoff(
    feed: ProviderFeed, sim: SimServer, sleep: RecordedSleep
) -> None:
    """Two 503s then a good answer: three requests, two waits, the second longer than the first's floor."""
    sim.set_fault(Fault("status", count=2, status=503))
    parsed = await feed.fetch()
    assert len(parsed.events) == 3
    assert sim.stats()["requests"] == 3
    first, second = sleep.delays
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0


async def requests_until_refused(
    feed: ProviderFeed, sim: SimServer, fault: Fault, match: str | None = None
) -> int:
    """With `fault` set, the fetch fails with a FeedError (matching `match`): how many requests it made."""
    sim.set_fault(fault)
    with pytest.raises(FeedError, match=match):
        await feed.fetch()
    requests: int = sim.stats()["requests"]
    return requests


async def test_attempts_are_bounded(feed: ProviderFeed, sim: SimServer) -> None:
    """A provider that keeps failing gets exactly `attempts` requests, then a FeedError."""
    assert await requests_until_refused(feed, sim, Fault("status", status=500), "3 times") == 3


async def test_4xx_is_not_retried(feed: ProviderFeed, sim: SimServer) -> None:
    """A client error will not fix itself: one request only."""
    assert await requests_until_refused(feed, sim, Fault("status", status=404), "404") == 1


async def test_slow_provider_hits_the_total_timeout_and_is_retried(
    feed: ProviderFeed, sim: SimServer
) -> None:
    """The first request outlives the 1 s timeout; the second, answered at once, is taken."""
    sim.set_fault(Fault("latency", count=1, seconds=3.0))
    parsed = await feed.fetch()
    assert parsed.events and sim.stats()["requests"] == 2


async def test_dropped_connection_is_retried(
    feed: ProviderFeed, sim: SimServer, sleep: RecordedSleep
) -> None:
    """aiohttp itself resends a GET once after a disconnect; the second drop reaches our retry."""
    sim.set_fault(Fault("drop", count=2))
    assert len((await feed.fetch()).events) == 3
    assert sim.stats()["requests"] == 3 and len(sleep.delays) == 1


@pytest.mark.parametrize("kind", ["truncate", "malformed", "html"])
async def test_garbage_answers_are_refused_without_retry(
    feed: ProviderFeed, sim: SimServer, kind: str
) -> None:
    """A 200 with a body that is not a whole feed is a FeedError; retrying would not change it."""
    assert await requests_until_refused(feed, sim, Fault(kind)) == 1


async def test_feed_over_the_cap_is_refused(feed: ProviderFeed, sim: SimServer) -> None:
    """The size cap holds whether or not the provider announces the length."""
    sim.set_fault(Fault("oversize", size=5_000_000))
    with pytest.raises(FeedRefused, match="cap"):
        await feed.fetch()


async def test_provider_down_is_a_feed_error(sleep: RecordedSleep) -> None:
    """Connection refused on every attempt ends in FeedError, not an unhandled exception."""
    with SimServer() as stopped:
        url = stopped.url
    provider = ProviderFeed(
        url, MADRID, timeout=1.0, max_bytes=1_000_000, retry=RetryPolicy(attempts=2), sleep=sleep
    )
    try:
        with pytest.raises(FeedError, match="2 times"):
            await provider.fetch()
    finally:
        await provider.close()
