"""Connections under `eventapi serve`: the header timeout closes silent, idle and slow ones; the cap holds.

Real processes over real sockets: the settings must reach Granian, and its HTTP/1 mode must apply the
timeout from the first byte (decision 015). The figures under load are loadtest/overload.py's.
"""

from __future__ import annotations

import resource
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventapi.cli import raise_open_files_limit
from eventapi.sim import SimServer
from tests.support.ports import HOST
from tests.support.service_process import ServiceProcess

# Far below any deadline here: a server that ignores the setting keeps Granian's 30 s.
HEADER_TIMEOUT = "0.5"
CLOSED_WITHIN = 10.0


@pytest.fixture
def service(sim: SimServer, tmp_path: Path) -> Iterator[ServiceProcess]:
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_HEADER_READ_TIMEOUT": HEADER_TIMEOUT}
    with ServiceProcess(settings, tmp_path / "service.log") as running:
        yield running


def connect(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=CLOSED_WITHIN)


def ask(connection: socket.socket, path: str = "/healthz") -> bytes:
    """One keep-alive request and its whole answer (the healthz body is small: one read may not do)."""
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: eventapi\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
        chunk = connection.recv(65536)
        assert chunk, f"closed before the answer was complete: {answer!r}"
        answer += chunk
    return answer


def closed_by_server(connection: socket.socket) -> bool:
    """Whether the server closes the connection (EOF or reset) before CLOSED_WITHIN runs out."""
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def trickle(connection: socket.socket) -> None:
    """A request head, one byte every 0.1 s, never finished: stops once the server hangs up."""
    deadline = time.monotonic() + CLOSED_WITHIN
    for byte in b"GET /healthz HTTP/1.1\r\nHost: eventapi\r\nX-Slow: " + b"a" * 1000:
        readable, _, _ = select.select([connection], [], [], 0.1)
        if readable or time.monotonic() > deadline:
            return
        try:
            connection.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return


BEFORE_WAITING: dict[str, Callable[[socket.socket], object]] = {
    "never sends a byte": lambda connection: None,
    "idle after an answer": ask,
    "sends its head byte by byte": trickle,
}


@pytest.mark.parametrize("behaviour", list(BEFORE_WAITING))
def test_the_header_timeout_closes_connections_that_send_no_request(
    service: ServiceProcess, behaviour: str
) -> None:
    """A connection without a complete request holds one of the worker's limited slots: it must end."""
    with connect(service.port) as connection:
        BEFORE_WAITING[behaviour](connection)
        assert closed_by_server(connection)


def test_connections_past_the_cap_wait_until_one_closes(sim: SimServer, tmp_path: Path) -> None:
    """EVENTAPI_MAX_CONNECTIONS_PER_WORKER bounds open connections, idle ones included, not requests."""
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_MAX_CONNECTIONS_PER_WORKER": "2"}
    with ServiceProcess(settings, tmp_path / "service.log") as service:
        first, second = connect(service.port), connect(service.port)
        assert ask(first).startswith(b"HTTP/1.1 200") and ask(second).startswith(b"HTTP/1.1 200")
        with connect(service.port) as third:  # the kernel completes the handshake; the worker waits
            third.sendall(b"GET /healthz HTTP/1.1\r\nHost: eventapi\r\n\r\n")
            # No answer can come while both slots are held: only a server without the cap answers.
            readable, _, _ = select.select([third], [], [], 0.5)
            assert readable == []
            first.close()
            assert third.recv(65536).startswith(b"HTTP/1.1 200")
        second.close()


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    """A container's soft limit of 1024 descriptors would stop a worker at ~1,000 connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 256:
        pytest.skip(f"needs a finite hard limit of open files above 256, not {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    try:
        assert raise_open_files_limit(1000) == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_hard_limit_below_the_connections_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The operator learns at start-up that the worker will refuse connections below its cap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no finite hard limit of open files")
    try:
        assert raise_open_files_limit(hard + 1) == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert "open files limited to" in caplog.text
