"""Feeds that tests hand to a refresh job in place of the provider (the HTTP path has its own tests)."""

from __future__ import annotations

import asyncio
import zoneinfo

from eventapi.errors import FeedError
from eventapi.refresh.work import ParsedFeed
from eventapi.refresh.xml_feed import parse
from eventapi.sim.feeds import sample_feed

MADRID = zoneinfo.ZoneInfo("Europe/Madrid")


class SampleFeed:
    """Hands out the provider's sample answers in turn; `gate` holds a fetch open, `fail` fails the next."""

    def __init__(self, *names: str) -> None:
        self._documents = [sample_feed(name) for name in names]
        self.gate = asyncio.Event()
        self.gate.set()
        self.fetching = asyncio.Event()
        self.fail = False
        self.closed = False

    async def fetch(self) -> ParsedFeed:
        self.fetching.set()
        await self.gate.wait()
        if self.fail:
            raise FeedError("provider failed 3 times, last: HTTP 503")
        if not self._documents:
            raise FeedError("no sample answer left in this test")
        return parse(self._documents.pop(0), MADRID)

    async def close(self) -> None:
        self.closed = True
