"""Feeds for the parser benchmarks, read or generated once per session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

from eventapi.sim.feeds import SAMPLE_NAMES, generate_feed, sample_feed
from tests.support.redis_server import RedisServer, RedisServerMissing

# A fixed seed: every run, on every machine, measures the same bytes.
SEED = 2027


@pytest.fixture(scope="session")
def sample_documents() -> dict[str, bytes]:
    """The provider's sample answers bundled with the package, by file name."""
    return {name: sample_feed(name) for name in SAMPLE_NAMES}


@pytest.fixture(scope="session")
def feed_1k_20() -> bytes:
    """1,000 base plans with 20 zones per plan: about 2.4 MB."""
    return generate_feed(1_000, 20, seed=SEED)


@pytest.fixture(scope="session")
def feed_5k_200() -> bytes:
    """5,000 base plans with 200 zones per plan: about 105 MB, over the service's 64 MiB cap."""
    return generate_feed(5_000, 200, seed=SEED)


# --- Core and ASGI benchmarks (test_bench_core.py, test_bench_asgi.py) -------------------------


@pytest.fixture(scope="session")
def feed_5k_20() -> bytes:
    """5,000 base plans with 20 zones per plan: about 12 MB, a large but accepted feed."""
    return generate_feed(5_000, 20, seed=SEED)


@pytest.fixture(scope="session")
def bench_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the session, uvloop as under Granian; benchmarks run it with run_until_complete."""
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; benchmarks keep apart by key prefix (`key_prefix()`)."""
    try:
        server = RedisServer(data_dir=tmp_path_factory.mktemp("redis"))
    except RedisServerMissing as exc:
        pytest.exit(str(exc), returncode=pytest.ExitCode.TESTS_FAILED)
    with server:
        yield server
