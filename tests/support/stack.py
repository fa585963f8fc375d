"""The stack a benchmark or load test drives: redis-server, the provider simulator and `eventapi serve`.

Each is started in a Processes (its own process group, its log in the run's folder), and each
function returns once its process answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.ports import HOST, free_port
from tests.support.processes import READY_SECONDS, ProcessError, Processes, clean_env
from tests.support.redis_server import RedisServerMissing, answers_as, find_binary, server_command
from tests.support.service_process import eventapi_command, start_eventapi

PROBE_PATH = "/search?starts_at=2027-03-01&ends_at=2027-03-31"


def start_redis(processes: Processes, name: str = "redis") -> str:
    """A redis-server without persistence on a free port, data in the log folder; its URL."""
    try:
        binary = find_binary()
    except RedisServerMissing as exc:
        raise ProcessError(str(exc)) from None
    port = free_port()
    process = processes.start(name, server_command(binary, port, processes.log_dir))
    processes.wait_until(name, lambda: answers_as(port, process.pid), "redis-server answers PING")
    return f"redis://{HOST}:{port}/0"


def start_simulator(
    processes: Processes,
    plans: int,
    zones: int,
    seed: int = 1,
    feeds: Sequence[Path] = (),
    seconds: float = READY_SECONDS,
    days: int = 365,
) -> str:
    """The provider simulator on a port it picks (`feeds` first, then the generated one, in turn); its URL."""
    feed_args = [arg for feed in feeds for arg in ("--feed", str(feed))]
    options = (
        f"--port 0 --generate-plans {plans} --generate-zones {zones} --seed {seed} --generate-days {days}"
    )
    processes.start("sim", eventapi_command("sim", *feed_args, *options.split()))

    def feed_url() -> str | None:
        lines = processes.log_text("sim").splitlines()
        return next((line.strip() for line in lines if line.startswith("http://")), None)

    return processes.wait_until("sim", feed_url, "the simulator prints its feed URL", seconds)


def seed_store(
    processes: Processes, redis_url: str, feed_url: str, settings: Mapping[str, str] | None = None
) -> str:
    """One `eventapi refresh` into the store, so searches have data from the first request; its output."""
    env = clean_env({**(settings or {}), "EVENTAPI_REDIS_URL": redis_url, "EVENTAPI_PROVIDER_URL": feed_url})
    return processes.run("seed-refresh", eventapi_command("refresh"), env, timeout=600).strip()


def start_service(
    processes: Processes,
    redis_url: str,
    feed_url: str,
    settings: Mapping[str, str],
    probe_path: str = PROBE_PATH,
) -> str:
    """`eventapi serve` with `settings` (EVENTAPI_* names) on a free port; its URL once a search answers."""
    urls = {"EVENTAPI_REDIS_URL": redis_url, "EVENTAPI_PROVIDER_URL": feed_url}
    return start_eventapi(processes, "service", {**settings, **urls}, free_port(), ready_path=probe_path)
