"""Run `python -m eventapi ...` as a real process for end-to-end tests, and talk to it over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_command(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run an eventapi command to completion with only the given EVENTAPI_* settings."""
    return subprocess.run(
        [sys.executable, "-m", "eventapi", *args],
        env=_environment(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _environment(settings: dict[str, str]) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EVENTAPI_")}
    return {**inherited, **settings}


class ServiceProcess:
    """`python -m eventapi serve` (or `demo`) on a free port; SIGTERM stops it on exit."""

    def __init__(
        self, settings: dict[str, str], log_path: Path, command: str = "serve", ready_path: str = "/search"
    ) -> None:
        self._command = command
        self._ready_path = ready_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._settings = {**settings, "EVENTAPI_PORT": str(self.port)}
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServiceProcess:
        log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "eventapi", self._command],
            cwd=REPO_ROOT,
            env=_environment(self._settings),
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group: a test may kill the whole instance,
        )
        self.wait_until(
            lambda: self.get(self._ready_path)[0] == 200, f"the service answers {self._ready_path}"
        )
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
        assert self._process is not None
        if self._process.poll() is None:
            self._process.send_signal(signum)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode

    def get(self, path: str) -> tuple[int, Any]:
        """Status and decoded JSON body of a GET; (0, None) while nothing listens."""
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=5) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, orjson.loads(error.read())
        except (urllib.error.URLError, ConnectionError):
            return 0, None

    def wait_until(self, condition: Any, what: str, deadline: float = 20.0) -> None:
        """Poll a condition until it holds; fail with the service's log after the deadline."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AssertionError(f"service exited ({self._process.returncode}):\n{self.log()}")
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting until {what}:\n{self.log()}")

    def log(self) -> str:
        return self._log_path.read_text(errors="replace")[-4000:]
