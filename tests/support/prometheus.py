"""A real `prometheus` server on a free loopback port, and its HTTP API, for end-to-end tests."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson

from tests.support.ports import free_port
from tests.support.processes import stop_process

T = TypeVar("T")
INSTALL_HINT = "apt-get install -y prometheus (Debian; .ci/run installs it)"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


class PrometheusServer:
    """`prometheus` with a given config file and its own data directory; SIGTERM on exit."""

    def __init__(self, config: Path, data_dir: Path, log_path: Path) -> None:
        binary = prometheus_binary()
        assert binary is not None, INSTALL_HINT
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._command = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(self._command, stdout=log, stderr=log)
        self.wait_for(lambda: self._ready() or None, "Prometheus is ready", deadline=30)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            stop_process(self._process, grace=15)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/-/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful answer of the HTTP API (`/api/v1/...`); AssertionError otherwise."""
        url = f"{self.base_url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                body = orjson.loads(answer.read())
        except urllib.error.HTTPError as error:
            body = orjson.loads(error.read())
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def wait_for(self, found: Callable[[], T | None], what: str, deadline: float = 60) -> T:
        """Poll until `found` returns something not None; fail with Prometheus's log at the deadline."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AssertionError(f"prometheus exited ({self._process.returncode}):\n{self.log()}")
            result = found()
            if result is not None:
                return result
            time.sleep(0.2)
        raise AssertionError(f"timed out after {deadline} s waiting until {what}:\n{self.log()}")

    def log(self) -> str:
        return self._log_path.read_text(errors="replace")[-3000:]
