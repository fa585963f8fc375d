"""Feeds for the parser benchmarks, read or generated once per session."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from eventapi.simfeed import generate_feed

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
# A fixed seed: every run, on every machine, measures the same bytes.
SEED = 2027


@pytest.fixture(scope="session")
def sample_documents() -> dict[str, bytes]:
    """The provider's sample answers in tests/fixtures, by file name."""
    return {path.name: path.read_bytes() for path in sorted(FIXTURES.glob("*.xml"))}


@pytest.fixture(scope="session")
def feed_1k_20() -> bytes:
    """1,000 base plans with 20 zones per plan: about 2.4 MB."""
    return generate_feed(1_000, 20, seed=SEED)


@pytest.fixture(scope="session")
def feed_5k_200() -> bytes:
    """5,000 base plans with 200 zones per plan: about 105 MB, over the service's 64 MiB cap."""
    return generate_feed(5_000, 200, seed=SEED)


# --- Core and ASGI benchmarks (test_bench_core.py, test_bench_asgi.py) -------------------------
# tests/ has no __init__.py; appended (not prepended) so nothing in it can shadow a bench module.
sys.path.append(str(Path(__file__).parent.parent / "tests"))
from redis_server import RedisServer, RedisServerMissing  # noqa: E402


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
