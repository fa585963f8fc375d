"""A real Sentinel deployment on loopback: a primary, a replica and three sentinels, for failover tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis

from tests.support.processes import stop_process
from tests.support.redis_server import (
    INSTALL_HINT,
    RedisServer,
    RedisServerError,
    RedisServerMissing,
    free_port,
)

SERVICE = "eventapi"
QUORUM = 2
_POLL_SECONDS = 0.05


def wait_for(condition: Callable[[], object], what: str, deadline: float) -> None:
    """Poll `condition()` until it is true; RedisServerError naming `what` after `deadline` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass  # a node still starting, or one a failover is turning round
        time.sleep(_POLL_SECONDS)
    raise RedisServerError(f"timed out after {deadline:g} s waiting until {what}")


class SentinelProcess:
    """One `redis-server FILE --sentinel`, with its own writable config (Sentinel rewrites it)."""

    def __init__(self, data_dir: Path, monitoring: str, password: str | None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.config_path = data_dir / "sentinel.conf"
        self.log_path = data_dir / "sentinel.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        own = f"requirepass {password}\nsentinel sentinel-pass {password}\n" if password else ""
        self.config_path.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {data_dir}\n{own}{monitoring}")
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerMissing(INSTALL_HINT)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, str(self.config_path), "--sentinel"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.client = redis.Redis(port=self.port, password=password, socket_timeout=1, decode_responses=True)
        wait_for(lambda: self.client.ping(), f"sentinel on port {self.port} answers", 10)

    def stop(self) -> None:
        self.client.close()
        stop_process(self.process, grace=10)


class SentinelGroup:
    """A primary, its replica and three sentinels watching them as service `eventapi`, all on loopback.

    Short `down_after_ms` and `failover_timeout_ms` make a failover take seconds, not the default minutes.
    `password` protects the Redis nodes, `sentinel_password` the sentinels.
    """

    def __init__(
        self,
        data_dir: Path,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.password = password
        self.sentinel_password = sentinel_password
        self.servers: dict[int, RedisServer] = {}
        self.pids: dict[int, int] = {}  # by port, read once at start (a killed server cannot say)
        self._clients: dict[int, redis.Redis] = {}
        self.sentinels: list[SentinelProcess] = []

    def __enter__(self) -> SentinelGroup:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _start(self) -> None:
        primary = RedisServer((), data_dir=self.data_dir / "redis-a")
        primary.start()
        self.servers[primary.port or 0] = primary
        replica = RedisServer(
            ("--replicaof", "127.0.0.1", str(primary.port)), data_dir=self.data_dir / "redis-b"
        )
        replica.start()
        self.servers[replica.port or 0] = replica
        wait_for(lambda: self._link_up(replica), "the replica is in sync with the primary", 10)
        for port, server in self.servers.items():
            self.pids[port] = int(self.client(server).info("server")["process_id"])
        if self.password:  # set once running: RedisServer's readiness check speaks without a password
            for server in self.servers.values():
                self.client(server).config_set("masterauth", self.password)
                self.client(server).config_set("requirepass", self.password)
                self._clients.pop(server.port or 0).close()
        monitoring = (
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        ) + (f"sentinel auth-pass {SERVICE} {self.password}\n" if self.password else "")
        for n in range(3):
            self.sentinels.append(
                SentinelProcess(self.data_dir / f"sentinel-{n}", monitoring, self.sentinel_password)
            )
        wait_for(
            self._sentinels_know_everyone, "every sentinel knows the replica and the other sentinels", 20
        )

    def url(self, db: int = 0) -> str:
        """`redis+sentinel://` naming the three sentinels, as EVENTAPI_REDIS_URL takes it."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        auth = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{auth}{hosts}/{SERVICE}/{db}"

    def primary_port(self) -> int:
        """The primary's port as the first sentinel that answers reports it."""
        for sentinel in self.sentinels:
            try:
                _, port = sentinel.client.sentinel_get_master_addr_by_name(SERVICE)
                return int(port)
            except (redis.RedisError, TypeError):
                continue
        raise RedisServerError("no sentinel answered with a primary")

    def primary(self) -> RedisServer:
        """The server the sentinels report as primary now."""
        return self.servers[self.primary_port()]

    def replica_of(self, primary_port: int) -> RedisServer:
        """The other server of the pair."""
        (other,) = (server for port, server in self.servers.items() if port != primary_port)
        return other

    def client(self, server: RedisServer) -> redis.Redis:
        """A plain client of one server, for a test's direct reads and writes."""
        port = server.port or 0
        if port not in self._clients:
            self._clients[port] = redis.Redis(port=port, password=self.password, socket_timeout=2)
        return self._clients[port]

    def failover(self) -> int:
        """`SENTINEL FAILOVER` on the first sentinel; returns the port of the primary it demotes."""
        old = self.primary_port()
        self.sentinels[0].client.execute_command("SENTINEL", "FAILOVER", SERVICE)
        return old

    def kill_primary(self) -> int:
        """SIGKILL the primary's process (no goodbye to anyone); returns its port."""
        old = self.primary_port()
        self.signal(self.servers[old], signal.SIGKILL)
        wait_for(lambda: not self.servers[old].running, f"the primary on port {old} is gone", 5)
        return old

    def signal(self, server: RedisServer, signum: signal.Signals) -> None:
        """Send a signal to one server's process (SIGSTOP and SIGCONT pause and resume it)."""
        os.kill(self.pids[server.port or 0], signum)

    def in_sync(self, primary: RedisServer, replica: RedisServer) -> bool:
        """Whether the replica has processed everything the primary has written."""
        written = self.client(primary).info("replication")["master_repl_offset"]
        processed = self.client(replica).info("replication").get("slave_repl_offset", -1)
        return bool(written == processed)

    def wait_for_new_primary(self, old_port: int, deadline: float) -> int:
        """Wait until every sentinel reports a primary other than `old_port` and it accepts writes."""

        def promoted() -> bool:
            ports = {
                int(sentinel.client.sentinel_get_master_addr_by_name(SERVICE)[1])
                for sentinel in self.sentinels
            }
            if len(ports) != 1 or old_port in ports:
                return False
            (port,) = ports
            role = self.client(self.servers[port]).execute_command("ROLE")
            return bool(role[0] == b"master")

        wait_for(promoted, f"the sentinels agree on a primary other than port {old_port}", deadline)
        return self.primary_port()

    def _link_up(self, replica: RedisServer) -> bool:
        info = self.client(replica).info("replication")
        return info.get("master_link_status") == "up"

    def _sentinels_know_everyone(self) -> bool:
        for sentinel in self.sentinels:
            master = sentinel.client.sentinel_master(SERVICE)
            if int(master["num-slaves"]) < 1 or int(master["num-other-sentinels"]) < len(self.sentinels) - 1:
                return False
        return True

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers.values():
            server.close()
