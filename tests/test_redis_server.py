"""The test Redis: a real server on a private port, shared safely through key prefixes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.support.redis_server import RedisServer, RedisServerError, RedisServerMissing, key_prefix


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


def test_session_server_is_a_real_redis_on_a_private_port(redis_server: RedisServer, redis_url: str) -> None:
    """Tests must talk to a server of their own, never to a developer's Redis on 6379."""
    with _client(redis_url) as client:
        info = client.info("server")
    assert info["tcp_port"] == redis_server.port
    assert redis_server.port != 6379
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.running


def test_key_prefixes_keep_tests_apart(redis_url: str, redis_prefix: str) -> None:
    """Two tests sharing the session server never see each other's keys."""
    other_prefix = key_prefix()
    assert other_prefix != redis_prefix
    with _client(redis_url) as client:
        client.set(f"{redis_prefix}:day", "mine")
        client.set(f"{other_prefix}:day", "theirs")
        client.set(f"{other_prefix}:generation", "7")

        assert sorted(client.scan_iter(match=f"{redis_prefix}*")) == [f"{redis_prefix}:day"]
        assert sorted(client.scan_iter(match=f"{other_prefix}*")) == [
            f"{other_prefix}:day",
            f"{other_prefix}:generation",
        ]


def test_restart_keeps_port_and_starts_a_new_process(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    """restart() comes back on the same URL, so clients built before it keep working."""
    server = redis_server_factory()
    url = server.url
    with _client(url) as client:
        first_run = client.info("server")["run_id"]
        client.set("k", "v")

        server.restart()

        assert server.url == url
        assert client.info("server")["run_id"] != first_run
        assert client.get("k") is None  # no persistence by default


def test_restart_with_appendonly_keeps_data(redis_server_factory: Callable[..., RedisServer]) -> None:
    """Extra arguments reach redis-server: with an AOF, data survives restart()."""
    server = redis_server_factory("--appendonly", "yes", "--appendfsync", "always")
    with _client(server.url) as client:
        client.set("k", "v")
        server.restart()
        assert client.get("k") == "v"


def test_missing_binary_names_the_install_command() -> None:
    """Without redis-server the suite stops with one line saying how to install it."""
    with pytest.raises(RedisServerMissing) as caught:
        RedisServer(binary="no-such-redis-server-binary")
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install -y redis-server" in message


def test_failed_start_raises_with_the_server_log(tmp_path: Path) -> None:
    """A server that cannot start fails fast and shows its own log, not a bare timeout."""
    server = RedisServer(["--no-such-option", "1"], data_dir=tmp_path)
    with pytest.raises(RedisServerError, match="no-such-option"):
        server.start()
    assert not server.running
