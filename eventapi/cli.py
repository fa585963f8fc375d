"""Command line: `eventapi serve | refresh | sim | demo | healthcheck | export | import` (or python -m)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from eventapi import history_file
from eventapi.errors import SettingsError, StoreUnavailable
from eventapi.files import write_atomically
from eventapi.observability.logs import configure_logging, granian_log_config
from eventapi.observability.metrics import metrics_directory
from eventapi.refresh.loop import Outcome, iso_utc
from eventapi.settings import Settings
from eventapi.wiring import (
    build_history_store,
    read_history,
    refresh_now,
    restore_history,
    serve_refresh_jobs,
)

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

    Each connection is a descriptor, and a container's soft limit is often 1024 (decision 015).
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
    # so a connection that never sends a byte is held forever (decision 015). nginx and the
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


def export(settings: Settings, output: str | None) -> int:
    """Write every stored event to a history file (stdout without --output); exit 1 when that failed."""
    store = build_history_store(settings, exporting=True)
    try:
        version, events = asyncio.run(read_history(store))
        lines = history_file.encode(history_file.Header(version, iso_utc(time.time()), len(events)), events)
        if output is None:
            sys.stdout.buffer.writelines(lines)
            sys.stdout.buffer.flush()
        else:
            write_atomically(Path(output), lines)  # a failed export never leaves half a backup
    except (StoreUnavailable, OSError) as exc:
        print(f"eventapi export: {exc}", file=sys.stderr)
        return 1
    print(
        f"export: {len(events)} events of generation {version.generation} (epoch {version.epoch or '-'}) "
        f"to {output or 'stdout'}",
        file=sys.stderr,
    )
    return 0


def import_(settings: Settings, source: str, *, replace: bool) -> int:
    """Restore a history file whole, or nothing of it when a line is bad; exit 1 when nothing was written."""
    store = build_history_store(settings, exporting=False)  # settings naming no usable store: before the file
    try:
        with contextlib.nullcontext(sys.stdin.buffer) if source == "-" else open(source, "rb") as lines:
            backup = history_file.decode(lines)
        outcome = asyncio.run(restore_history(store, backup.events, replace=replace))
    except history_file.HistoryFileError as exc:
        print(f"eventapi import: {source}: {exc}; nothing written", file=sys.stderr)
        return 1
    except (StoreUnavailable, OSError) as exc:
        print(f"eventapi import: {exc}; nothing written", file=sys.stderr)
        return 1
    print(
        f"import: {outcome.changed} of {len(backup.events)} events written "
        f"({'the file wins' if replace else 'the store keeps the events it has'}); the store serves "
        f"{outcome.served} events at generation {outcome.generation}"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventapi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="serve the API under Granian")
    refresh_command = commands.add_parser("refresh", help="one fetch-and-store cycle (exit 1 when it failed)")
    # A serving worker's refresh job server (eventapi/refresh/job_server.py), not for operators.
    refresh_command.add_argument("--job-server", action="store_true", help=argparse.SUPPRESS)
    commands.add_parser("sim", help="the provider simulator (`eventapi sim --help`)")
    commands.add_parser("demo", help="the simulator and the service wired together")
    commands.add_parser("healthcheck", help="exit 0 when GET /healthz on this host answers 200")
    store_note = (
        "The store is Redis when EVENTAPI_REDIS_URL is set, else the embedded store's snapshot file "
        "EVENTAPI_SNAPSHOT_PATH (required then)."
    )
    export_command = commands.add_parser(
        "export", help="write every stored event to a history file (JSON lines)",
        description="Write every stored event, with a header naming the store's generation, as JSON lines. "
        + store_note,
    )  # fmt: skip
    export_command.add_argument("--output", "-o", metavar="FILE", help="write here (atomically), not stdout")
    import_command = commands.add_parser(
        "import", help="restore a history file into the store, whole or not at all",
        description="Restore a history file written by `eventapi export` in one write: a bad line refuses "
        "the whole file. Adds the events the store lacks and keeps the ones it has. " + store_note
        + " Stop a service on the embedded store first: it would write over the file at its next change.",
    )  # fmt: skip
    import_command.add_argument("file", metavar="FILE", help="the history file, or - for stdin")
    import_command.add_argument(
        "--replace", action="store_true", help="the file's values win over the ones the store has"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["sim"]:
        from eventapi.sim import main as sim_main

        return sim_main(args[1:])
    arguments = _parser().parse_args(args)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"eventapi: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    runners: dict[str, Callable[[Settings], int]] = {
        "serve": serve,
        "refresh": serve_refresh_jobs if getattr(arguments, "job_server", False) else refresh,
        "demo": demo,
        "healthcheck": healthcheck,
        "export": lambda settings: export(settings, arguments.output),
        "import": lambda settings: import_(settings, arguments.file, replace=arguments.replace),
    }
    try:
        return runners[arguments.command](settings)
    except SettingsError as exc:  # a setting found unusable only when used (EVENTAPI_METRICS_DIR)
        print(f"eventapi: {exc}", file=sys.stderr)
        return 2
