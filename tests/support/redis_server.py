"""A real redis-server on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tests.support.ports import HOST, free_port
from tests.support.processes import stop_process

INSTALL_HINT = (
    "redis-server is not on PATH and the tests need a real one: "
    "install it with `sudo apt-get install -y redis-server` (macOS: `brew install redis`)"
)

_PING = b"*1\r\n$4\r\nPING\r\n"
_PONG = b"+PONG\r\n"
_INFO_SERVER = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
_POLL_INTERVAL = 0.02
# A port picked from the kernel can be taken by another process before redis binds it;
# only the first start retries with a new port (restart must keep its port).
_PORT_ATTEMPTS = 3


class RedisServerError(RuntimeError):
    """redis-server could not be started or did not answer in time."""


class RedisServerMissing(RedisServerError):
    """No redis-server binary: the message is one line naming the install command."""


def key_prefix() -> str:
    """Return a key prefix no other test uses, so tests can share one server."""
    return f"t-{uuid.uuid4().hex[:12]}"


def find_binary(binary: str = "redis-server") -> str:
    """The path of `binary`, or RedisServerMissing naming the install command."""
    found = shutil.which(binary)
    if found is None:
        raise RedisServerMissing(INSTALL_HINT)
    return found


def server_command(binary: str, port: int, data_dir: Path, extra_args: Sequence[str] = ()) -> list[str]:
    """redis-server on 127.0.0.1:`port` without persistence (unless `extra_args` turn it on)."""
    return [
        binary,
        "--port", str(port),
        "--bind", HOST,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        *extra_args,
    ]  # fmt: skip


def answers_as(port: int, pid: int) -> bool:
    """Whether the redis-server of process `pid` answers PING on `port` (and is done loading)."""
    # Raw RESP, so no client state to reset between polls. PING must answer +PONG (a server
    # still loading its AOF answers -LOADING), and INFO must name our pid: the port was free
    # a moment ago, but another server could have taken it since.
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as conn:
            replies = conn.makefile("rb")
            conn.sendall(_PING)
            if replies.readline() != _PONG:
                return False
            conn.sendall(_INFO_SERVER)
            header = replies.readline()
            if not header.startswith(b"$"):
                return False
            info = replies.read(int(header[1:]) + 2)
            return f"process_id:{pid}\r\n".encode() in info
    except (OSError, ValueError):
        return False


class RedisServer:
    """One redis-server process on 127.0.0.1, with no persistence unless extra_args ask for it."""

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        *,
        data_dir: Path | None = None,
        binary: str = "redis-server",
        start_timeout: float = 10.0,
    ) -> None:
        self.binary = find_binary(binary)
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self._owns_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="redis-test-")) if data_dir is None else data_dir
        self.log_path = self.data_dir / "redis-server.log"
        self.port: int | None = None
        self._log_offset = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of database 0 on this server."""
        return f"redis://{HOST}:{self._started_port()}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server on a free port and return once it answers PING."""
        if self.running:
            return
        if self.port is not None:
            self._start_on(self.port)
            return
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = free_port()
            try:
                self._start_on(port)
            except RedisServerError:
                if attempt == _PORT_ATTEMPTS or "Address already in use" not in self._read_log():
                    raise
            else:
                return

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); data_dir is kept for restart()."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_process(process, grace=10)

    def restart(self) -> None:
        """Stop and start again on the same port with the same data_dir."""
        self._started_port()
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove data_dir if this object created it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, data_dir={str(self.data_dir)!r}, running={self.running})"

    def _started_port(self) -> int:
        if self.port is None:
            raise RedisServerError("RedisServer has not been started")
        return self.port

    def _start_on(self, port: int) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = server_command(self.binary, port, self.data_dir, self.extra_args)
        # Append, so the log of a restart follows the log of the previous run.
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"--- {shlex.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.port = port
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                raise RedisServerError(
                    f"redis-server exited with status {process.returncode} before answering PING; "
                    f"its log ({self.log_path}):\n{self._read_log()}"
                )
            if answers_as(self._started_port(), process.pid):
                return
            time.sleep(_POLL_INTERVAL)
        self.stop()
        raise RedisServerError(
            f"redis-server on port {self.port} did not answer PING within {self.start_timeout:g} s; "
            f"its log ({self.log_path}):\n{self._read_log()}"
        )

    def _read_log(self) -> str:
        """Return the tail of this run's log (the file also holds earlier runs)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")[-4000:]
        except OSError as exc:
            return f"<log unreadable: {exc}>"
