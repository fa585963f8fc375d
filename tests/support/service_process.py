"""Run `python -m eventapi ...` as a real process for end-to-end tests, and talk to it over HTTP."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from tests.support.ports import HOST, free_port
from tests.support.processes import READY_SECONDS, REPO_ROOT, Processes, clean_env


def eventapi_command(*args: str) -> list[str]:
    """`python -m eventapi ARGS` with this interpreter."""
    return [sys.executable, "-m", "eventapi", *args]


def run_command(
    args: list[str], env: dict[str, str], timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run an eventapi command to completion with only the given EVENTAPI_* settings (and `stdin`, if any)."""
    return subprocess.run(
        eventapi_command(*args),
        input=stdin,
        env=clean_env(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


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


def get_json(url: str) -> tuple[int, Any]:
    """Status and decoded JSON body of a GET; (0, None) while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())
    except OSError:  # refused, reset or timed out: no answer (yet)
        return 0, None


def answers_200(url: str) -> Callable[[], bool]:
    """A readiness probe: whether a GET of `url` answers 200 (False while nothing listens)."""

    def ready() -> bool:
        try:
            return http("GET", url)[0] == 200
        except OSError:
            return False

    return ready


def start_eventapi(
    processes: Processes,
    name: str,
    settings: Mapping[str, str],
    port: int,
    *,
    command: str = "serve",
    ready_path: str = "/search",
    seconds: float = READY_SECONDS,
) -> str:
    """`python -m eventapi COMMAND` with `settings` on `port`; its base URL once `ready_path` answers 200."""
    env = clean_env({"EVENTAPI_HOST": HOST, **settings, "EVENTAPI_PORT": str(port)})
    processes.start(name, eventapi_command(command), env)
    base_url = f"http://{HOST}:{port}"
    processes.wait_until(name, answers_200(base_url + ready_path), f"{name} answers {ready_path}", seconds)
    return base_url


class ServiceProcess:
    """`python -m eventapi serve` (or `demo`) on a free port; SIGTERM stops it on exit.

    Its output is appended to `log_path`, so a restart on the same path keeps the earlier run's lines.
    """

    def __init__(
        self, settings: dict[str, str], log_path: Path, command: str = "serve", ready_path: str = "/search"
    ) -> None:
        self._command = command
        self._ready_path = ready_path
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self._settings = settings
        self._name = log_path.stem
        self._processes = Processes(log_path.parent, append_logs=True)
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServiceProcess:
        with contextlib.ExitStack() as on_failure:
            on_failure.enter_context(self._processes)  # stops the service if it never gets ready
            start_eventapi(
                self._processes, self._name, self._settings, self.port,
                command=self._command, ready_path=self._ready_path, seconds=20,
            )  # fmt: skip
            on_failure.pop_all()
        self._process = self._processes.running[self._name]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """Send `signum` (SIGKILL after 15 s) and return the exit status; again, only the status."""
        if self._name in self._processes.running:
            return self._processes.stop(self._name, signum, grace=15)
        assert self._process is not None
        return self._process.returncode

    def get(self, path: str) -> tuple[int, Any]:
        """Status and decoded JSON body of a GET; (0, None) while nothing listens."""
        return get_json(self.base_url + path)

    def wait_until(self, condition: Callable[[], object], what: str, deadline: float = 20.0) -> None:
        """Poll a condition until it holds; fail with the service's log if it exits or the deadline passes."""
        self._processes.wait_until(self._name, condition, what, deadline)

    def log(self) -> str:
        """The end of what this run of the service logged."""
        return self._processes.log_text(self._name)[-4000:]
