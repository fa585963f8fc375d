"""Fixtures shared by the whole suite, one section per concern; add new ones to their section."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from eventapi.sim import SimServer, feeds
from eventapi.store import Store
from eventapi.store.memory import MemoryStore
from eventapi.store.redis import RedisStore

# tests/ has no __init__.py: pytest puts this directory on sys.path, so helpers import by name.
from tests.support.redis_server import RedisServer, RedisServerMissing, key_prefix
from tests.support.sentinel import SentinelGroup

# --- Redis ----------------------------------------------------------------------------------
# A real redis-server, never a fake: a machine without one fails the run with the install
# command instead of skipping the tests that need it.


def _new_redis_server(extra_args: Sequence[str], data_dir: Path) -> RedisServer:
    try:
        return RedisServer(extra_args, data_dir=data_dir)
    except RedisServerMissing as exc:
        pytest.exit(str(exc), returncode=pytest.ExitCode.TESTS_FAILED)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests keep apart through redis_prefix."""
    with _new_redis_server((), tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's redis-server (database 0)."""
    return redis_server.url


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, `t-<12 hex digits>`, so tests sharing a server never meet."""
    return key_prefix()


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start servers of the test's own, `start(*extra_args)`, e.g. for persistence or replication."""
    servers: list[RedisServer] = []

    def start(*extra_args: str) -> RedisServer:
        server = _new_redis_server(extra_args, tmp_path / f"redis-{len(servers)}")
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A primary, its replica and three sentinels of this test's own (failovers change who is primary)."""
    try:
        with SentinelGroup(tmp_path / "sentinel-group") as group:
            yield group
    except RedisServerMissing as exc:
        pytest.exit(str(exc), returncode=pytest.ExitCode.TESTS_FAILED)


# --- Sample feeds -----------------------------------------------------------------------------
# The provider's sample responses, as the service would fetch them: bytes, not text.


@pytest.fixture(scope="session")
def sample_feed() -> Callable[[str], bytes]:
    """Read a sample response bundled with the package by file name, e.g. `sample_feed("response_1.xml")`."""
    return feeds.sample_feed


# --- The provider simulator and the stores ----------------------------------------------------


@pytest.fixture
def sim() -> Iterator[SimServer]:
    """The provider simulator serving the sample answers in turn, on a port of its own."""
    with SimServer() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Store:
    """Each test runs once on the embedded store and once on Redis (its own key prefix); not opened."""
    if request.param == "memory":
        return MemoryStore()
    return RedisStore(request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))
