"""Command line: `eventapi serve | refresh | sim | demo | healthcheck` (also `python -m eventapi ...`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import resource
import sys
from collections.abc import Callable, Sequence

from eventapi.errors import SettingsError
from eventapi.observability.logs import configure_logging, granian_log_config
from eventapi.observability.metrics import metrics_directory
from eventapi.refresh.loop import Outcome
from eventapi.settings import Settings
from eventapi.wiring import refresh_now, serve_refresh_jobs

APP_FACTORY = "eventapi.wiring:create_app"
# On SIGTERM each worker gets this long to finish its requests and shut down, then is killed; an
# orchestrator's grace period must exceed it (compose: 20 s; Kubernetes: docs/deploy.md, "Shutdown").
DRAIN_SECONDS = 15
HEALTHCHECK_TIMEOUT = 2.0
# Descriptors a worker holds besides its clients' connections: Redis, its job server, logs, metrics.
SPARE_DESCRIPTORS = 256

log = logging.getLogger(__name__)


def serve(settings: Settings) -> int:
    """Run the API under Granian: ASGI interface, uvloop, EVENTAPI_WORKERS workers."""
    with metrics_directory(settings.metrics_dir) as directory:
        settings = dataclasses.replace(settings, metrics_dir=str(directory))
        # Granian forks the workers from this process, and their create_app reads these settings.
        os.environ.update(settings.to_environ())
        raise_open_files_limit(settings.max_connections_per_worker + SPARE_DESCRIPTORS)
        _serve(settings)
    return 0


def raise_open_files_limit(needed: int) -> int:
    """Raise the soft limit of open files to the hard one (the workers inherit it); the limit set.

    Each connection is a descriptor, and a container's soft limit is often 1024 (decision 014).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, needed) if hard == resource.RLIM_INFINITY else hard
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < needed:
        log.warning(
            "open files limited to %d, but EVENTAPI_MAX_CONNECTIONS_PER_WORKER asks for about %d: "
            "a worker refuses connections past the limit; raise the hard limit (ulimit -Hn, the "
            "container's nofile)",
            wanted,
            needed,
        )
    return wanted


def _serve(settings: Settings) -> None:
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.server import Server

    # HTTP/1 only: in Granian's auto mode the protocol is sniffed before hyper's header timer starts,
    # so a connection that never sends a byte is held forever (decision 014). nginx and the
    # Ingress speak HTTP/1.1 to the service.
    Server(
        APP_FACTORY,
        factory=True,
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        backlog=settings.backlog,
        backpressure=settings.max_connections_per_worker,
        http1_settings=HTTP1Settings(header_read_timeout=round(settings.header_read_timeout * 1000)),
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        loop=Loops.uvloop,
        log_level=settings.log_level.lower(),  # type: ignore[arg-type]
        workers_kill_timeout=DRAIN_SECONDS,
        log_dictconfig=granian_log_config(),
    ).serve()


def refresh(settings: Settings) -> int:
    """One fetch-and-store cycle, for cron and operators; non-zero exit when it failed."""
    outcome = asyncio.run(refresh_now(settings))
    print(f"refresh: {outcome.value}")
    return 0 if outcome in (Outcome.REFRESHED, Outcome.UNCHANGED) else 1


def healthcheck(settings: Settings) -> int:
    """GET /healthz of the server on this host: exit 0 when it answers 200, else 1.

    For exec probes in images without curl, as one plain word (podman 4.3 joins a probe's
    arguments into a shell line, so code passed with `python -c` breaks there).
    """
    import urllib.request

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=HEALTHCHECK_TIMEOUT) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as exc:  # refused, timed out, or an error status (HTTPError)
        print(f"eventapi healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


def demo(settings: Settings) -> int:
    """The simulator and the service wired together, so a newcomer sees events with no network."""
    from eventapi.sim import SimServer

    with SimServer() as sim:
        os.environ["EVENTAPI_PROVIDER_URL"] = sim.url
        os.environ.setdefault("EVENTAPI_REFRESH_INTERVAL", "5")
        settings = Settings.from_env()
        print(
            f"demo: simulator at {sim.url}; try http://{settings.host}:{settings.port}/search"
            "?starts_at=2021-01-01&ends_at=2022-12-31",
            flush=True,
        )
        return serve(settings)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="eventapi", description=__doc__)
    parser.add_argument("command", choices=["serve", "refresh", "sim", "demo", "healthcheck"])
    # A serving worker's refresh job server (eventapi/refresh/job_server.py), not for operators.
    parser.add_argument("--job-server", action="store_true", help=argparse.SUPPRESS)
    if args[:1] == ["sim"]:
        from eventapi.sim import main as sim_main

        return sim_main(args[1:])
    arguments = parser.parse_args(args)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"eventapi: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if arguments.command == "refresh":
        return serve_refresh_jobs(settings) if arguments.job_server else refresh(settings)
    runners: dict[str, Callable[[Settings], int]] = {"serve": serve, "demo": demo, "healthcheck": healthcheck}
    try:
        return runners[arguments.command](settings)
    except SettingsError as exc:  # a setting found unusable only when used (EVENTAPI_METRICS_DIR)
        print(f"eventapi: {exc}", file=sys.stderr)
        return 2
