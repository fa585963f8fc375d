"""The provider simulator: a real HTTP server that serves feeds in turn and injects faults on demand."""

from eventapi.sim.feeds import generate_feed, load_sample_feeds
from eventapi.sim.server import FAULT_KINDS, FEED_PATH, Fault, SimServer, Simulator, main

__all__ = [
    "FAULT_KINDS",
    "FEED_PATH",
    "Fault",
    "SimServer",
    "Simulator",
    "generate_feed",
    "load_sample_feeds",
    "main",
]
