"""One refresh's work (fetch, parse, merge), in this process or in a child process.

The work is seconds of CPU for a large feed. In a serving worker it competes with searches for
the GIL: Granian's threads wait up to the 5 ms switch interval for each hand-over, so even a
cooperatively sliced parse multiplied search latency (bench/refresh_stall.py: p99 x23). In a
child process the worker's loop only waits on a pipe.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson

from .config import Settings
from .errors import EventApiError, FeedError
from .feed import SkippedPlan
from .provider import Feed
from .store.base import Store

# A hostile feed can hold any number of bad plans: the report names the first ones, counts all.
_MAX_REPORTED_SKIPS = 1_000


@dataclass(frozen=True, slots=True)
class RefreshReport:
    """What one refresh did."""

    plans_seen: int
    skipped_by_kind: dict[str, int]
    changed: int
    served: int
    generation: int
    skipped: list[SkippedPlan] = field(default_factory=list)
    peak_rss_kib: int = 0  # of the process that did the work
    feed_bytes: int = 0

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> RefreshReport:
        fields: dict[str, Any] = orjson.loads(raw)
        fields["skipped"] = [SkippedPlan(**skip) for skip in fields["skipped"]]
        return cls(**fields)


class RefreshJob(Protocol):
    async def __call__(self) -> RefreshReport:
        """Fetch, parse and merge once; EventApiError when it failed (nothing stored changed)."""


class InProcessJob:
    """The refresh's work on this process's event loop (the embedded store, one-off commands)."""

    def __init__(self, feed: Feed, store: Store) -> None:
        self._feed = feed
        self._store = store

    async def __call__(self) -> RefreshReport:
        parsed = await self._feed.fetch()
        merged = await self._store.merge(parsed.events)
        return RefreshReport(
            plans_seen=len(parsed.events) + len(parsed.skipped),
            skipped_by_kind=dict(Counter(skip.kind for skip in parsed.skipped)),
            changed=merged.changed,
            served=merged.served,
            generation=merged.generation,
            skipped=parsed.skipped[:_MAX_REPORTED_SKIPS],
            peak_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            feed_bytes=parsed.size,
        )


class ChildProcessJob:
    """The refresh's work in `python -m eventapi refresh --job`, with this worker's settings."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        # Without the workers' metrics directory: the child's own (empty) metrics must not mix in.
        inherited = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
        self._environ = {**inherited, **settings.to_environ()}
        self._timeout = timeout

    async def __call__(self) -> RefreshReport:
        # subprocess.Popen forks with vfork: uvloop's own spawn is a full fork(), which stops this
        # worker while the page tables of its whole heap are copied.
        child = subprocess.Popen(  # noqa: ASYNC220 (vfork, on purpose: see above)
            [sys.executable, "-m", "eventapi", "refresh", "--job"],
            env=self._environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(self._timeout):
                # A thread blocked on the pipe holds no GIL; the loop stays free for searches.
                output, _ = await asyncio.to_thread(child.communicate)
        except BaseException:
            # Cancelled (shutdown) or out of time: the child dies before or after its single
            # MULTI/EXEC, never in the middle of one, so nothing half-written can remain.
            child.kill()
            child.wait()
            raise
        last_line = output.strip().rsplit(b"\n", 1)[-1]
        if child.returncode == 0:
            return RefreshReport.from_json(last_line)
        try:
            message = str(orjson.loads(last_line)["error"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = f"refresh process exited with code {child.returncode}"
        raise FeedError(message)


async def run_job_and_print(job: RefreshJob) -> int:
    """The child's side: run the job, print its report (or its error) as one JSON line."""
    try:
        report = await job()
    except EventApiError as exc:
        sys.stdout.buffer.write(orjson.dumps({"error": str(exc)}) + b"\n")
        return 1
    sys.stdout.buffer.write(report.to_json() + b"\n")
    return 0
