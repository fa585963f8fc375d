"""Processes that tests, benchmarks and load tests start: one process group each, logs in one folder.

Each process gets a new session, so stopping it also stops what it started (Granian's workers,
locust's); a readiness poll fails fast with the tail of the process's log instead of a bare timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_SECONDS = 60.0
POLL_SECONDS = 0.05


class ProcessError(Exception):
    """A started process exited or was not ready in time, or a command failed (with its log's tail)."""


def clean_env(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without the caller's EVENTAPI_* variables, plus `settings`."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("EVENTAPI_")}
    return inherited | dict(settings or {})


class Processes:
    """Processes started for one run, each in its own process group, all stopped on exit.

    `cwd` and `extra_env` apply to every command (a benchmark may run another source tree);
    `append_logs` keeps the log of an earlier process of the same name (a restart) before the new one.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        cwd: Path = REPO_ROOT,
        extra_env: Mapping[str, str] | None = None,
        append_logs: bool = False,
    ) -> None:
        self.log_dir = log_dir
        self.cwd = cwd
        self.extra_env = dict(extra_env or {})
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self._log_mode = "ab" if append_logs else "wb"
        self._log_offsets: dict[str, int] = {}

    def start(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `command` (environment: `env`, else clean_env()) with stdout and stderr in its log."""
        environment = (clean_env() if env is None else dict(env)) | self.extra_env
        with self._open_log(name) as log:
            process = subprocess.Popen(
                list(command), cwd=self.cwd, env=environment, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.running[name] = process
        return process

    def run(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> str:
        """Run `command` to completion with its output in its log; its stdout, or ProcessError."""
        environment = (clean_env() if env is None else dict(env)) | self.extra_env
        try:
            done = subprocess.run(
                list(command), cwd=self.cwd, env=environment, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=timeout, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise ProcessError(f"{name}: not done within {timeout:g} s: {' '.join(command)}") from exc
        with self._open_log(name) as log:
            log.write((done.stdout + done.stderr).encode())
        if done.returncode != 0:
            raise ProcessError(f"{name} exited with status {done.returncode}:\n{self.tail(name)}")
        return done.stdout

    def wait_until(
        self, name: str, probe: Callable[[], T | None], what: str, seconds: float = READY_SECONDS
    ) -> T:
        """Poll `probe` until it returns something truthy; ProcessError once `name` exits or time is up."""
        process = self.running[name]
        deadline = time.monotonic() + seconds
        while True:
            found = probe()
            if found:
                return found
            if process.poll() is not None:
                status = process.returncode
                raise ProcessError(f"{what}: {name} exited with status {status}:\n{self.tail(name)}")
            if time.monotonic() > deadline:
                raise ProcessError(f"{what}: not within {seconds:g} s:\n{self.tail(name)}")
            time.sleep(POLL_SECONDS)

    def stop(self, name: str, signum: signal.Signals = signal.SIGTERM, grace: float = 10.0) -> int:
        """Send `signum`, SIGKILL the group after `grace` s, then sweep the group; the exit status."""
        process = self.running.pop(name)
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        _signal_group(process, signal.SIGKILL)  # whatever it started and left behind
        return process.returncode

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_text(self, name: str) -> str:
        """What the latest process of this name wrote to its log (an appended log also holds earlier ones)."""
        try:
            with self.log_path(name).open("rb") as log:
                log.seek(self._log_offsets.get(name, 0))
                return log.read().decode(errors="replace")
        except OSError as exc:
            return f"<log unreadable: {exc}>"

    def tail(self, name: str, lines: int = 20) -> str:
        """The last lines of the log, for an error message."""
        last = self.log_text(name).splitlines()[-lines:]
        return "\n".join(f"  | {line}" for line in last) + f"\n  (log: {self.log_path(name)})"

    def _open_log(self, name: str) -> IO[Any]:
        log = self.log_path(name).open(self._log_mode)
        self._log_offsets[name] = log.tell()
        return log

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for name in reversed(list(self.running)):
            self.stop(name)


def stop_process(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM a process we started, SIGKILL it after `grace` s; return once it has exited."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def run_harness(label: str, body: Callable[[], int], errors: tuple[type[Exception], ...] = ()) -> int:
    """Run a benchmark's or load test's `body` as a command and return its exit status.

    SIGTERM and SIGINT unwind it, so every Processes it entered stops what it started (even when
    started with SIGINT ignored, as a background job of a script is); a run that could not be made
    (ProcessError, or one of `errors`) is status 2, an interrupted one 130.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    not_made: tuple[type[Exception], ...] = (ProcessError, *errors)
    try:
        return body()
    except not_made as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{label}: interrupted; every process it started is stopped", file=sys.stderr)
        return 130


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
