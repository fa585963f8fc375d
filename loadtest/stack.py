"""The stack under load: redis-server, the provider simulator and `eventapi serve`, each in its own group.

Shared by the load tests and bench/http_bench.py: every process in a new session so that stopping
it also stops Granian's workers, logs in one run directory, a readiness poll that fails fast with
the log's tail.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
READY_SECONDS = 60.0
PROBE_PATH = "/search?starts_at=2027-03-01&ends_at=2027-03-31"


class StackError(Exception):
    """A process of the stack did not start, or the store could not be seeded."""


class Processes:
    """Every process the harness starts, each in its own process group, all stopped on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        with self.log_path(name).open("wb") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, env=dict(env), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        self.running[name] = process
        return process

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def stop(self, name: str) -> None:
        """SIGTERM the group, SIGKILL it after 10 s, then sweep any straggler."""
        process = self.running.pop(name)
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        _signal_group(process, signal.SIGKILL)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: type[BaseException] | BaseException | TracebackType | None) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the caller's EVENTAPI_* variables, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("EVENTAPI_")}
    return env | extra


def tail(log: Path, lines: int = 20) -> str:
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    return "\n".join(f"  | {line}" for line in text[-lines:]) + f"\n  (log: {log})"


def wait_until(ready: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while not ready():
        if process.poll() is not None:
            raise StackError(f"{what} exited ({process.returncode}) before it was ready:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {READY_SECONDS:.0f} s:\n{tail(log)}")
        time.sleep(0.1)


def http(method: str, url: str, payload: object = None) -> tuple[int, bytes]:
    """One request; an HTTP error status is an answer, not an exception."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def answers_200(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return http("GET", url)[0] == 200
        except OSError:
            return False

    return ready


def start_redis(processes: Processes) -> str:
    port = free_port()
    # No persistence: the store lives for one run, and a background save would disturb it.
    command = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    process = processes.start("redis", [*command, "--dir", str(processes.log_dir)], os.environ)

    def ready() -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_until(ready, "redis-server", process, processes.log_path("redis"))
    return f"redis://{HOST}:{port}/0"


def start_simulator(
    processes: Processes, plans: int, zones: int, seed: int = 1, feeds: Sequence[Path] = ()
) -> str:
    """The provider simulator on a port it picks (`feeds` first, then the generated one, in turn)."""
    feed_args = [arg for feed in feeds for arg in ("--feed", str(feed))]
    options = f"--port 0 --generate-plans {plans} --generate-zones {zones} --seed {seed}"
    command = [PYTHON, "-m", "eventapi", "sim", *feed_args, *options.split()]
    process = processes.start("sim", command, clean_env())
    log = processes.log_path("sim")

    def feed_url() -> str | None:
        lines = log.read_text(errors="replace").splitlines()
        return next((line.strip() for line in lines if line.startswith("http://")), None)

    wait_until(lambda: feed_url() is not None, "provider simulator", process, log)
    return str(feed_url())


def seed_store(redis_url: str, feed_url: str) -> str:
    """One `eventapi refresh` into the store, so searches have data from the first request."""
    env = clean_env(EVENTAPI_REDIS_URL=redis_url, EVENTAPI_PROVIDER_URL=feed_url)
    command = [PYTHON, "-m", "eventapi", "refresh"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise StackError(f"eventapi refresh exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def start_service(
    processes: Processes,
    redis_url: str,
    feed_url: str,
    settings: Mapping[str, str],
    probe_path: str = PROBE_PATH,
) -> str:
    """`eventapi serve` with `settings` (EVENTAPI_* names) on a free port; ready when a search answers."""
    port = free_port()
    env = clean_env(
        EVENTAPI_REDIS_URL=redis_url,
        EVENTAPI_PROVIDER_URL=feed_url,
        EVENTAPI_HOST=HOST,
        EVENTAPI_PORT=str(port),
        **settings,
    )
    process = processes.start("service", [PYTHON, "-m", "eventapi", "serve"], env)
    base_url = f"http://{HOST}:{port}"
    wait_until(answers_200(base_url + probe_path), "eventapi serve", process, processes.log_path("service"))
    return base_url
