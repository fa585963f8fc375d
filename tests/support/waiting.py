"""Waiting on the event loop for a condition, with a deadline: tests never sleep for luck."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(probe: Callable[[], T], what: str, seconds: float = 10.0) -> T:
    """The probe's first truthy value, polled every 10 ms; AssertionError naming `what` after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while not (found := probe()):
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {seconds:g} s") from None
    return found
