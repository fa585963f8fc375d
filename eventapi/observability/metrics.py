"""Prometheus metrics, counted in plain ints on the hot path and published in batches.

A prometheus-client call per request (a lock and, across Granian's worker processes, an mmap
write) costs more than a whole cached search, so requests are tallied in dicts of ints and the
deltas are published once a second and before each scrape. With PROMETHEUS_MULTIPROC_DIR set
(`eventapi serve` sets it) every worker writes its own files and any worker's /metrics sums them.
"""

from __future__ import annotations

import bisect
import os
from collections import Counter
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client import Counter as PromCounter

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REFRESH_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class RequestTally:
    """Per-request counts and latency buckets in plain ints: the only per-request metrics work."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.buckets: dict[str, list[int]] = {}
        self.seconds: dict[str, float] = {}

    def record(self, route: str, status: int, seconds: float) -> None:
        self.requests[route, status] += 1
        buckets = self.buckets.get(route)
        if buckets is None:
            buckets = self.buckets[route] = [0] * (len(LATENCY_BUCKETS) + 1)
        buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.seconds[route] = self.seconds.get(route, 0.0) + seconds

    def take(self) -> tuple[Counter[tuple[str, int]], dict[str, list[int]], dict[str, float]]:
        """The tallies so far, leaving fresh ones behind."""
        taken = self.requests, self.buckets, self.seconds
        self.requests, self.buckets, self.seconds = Counter(), {}, {}
        return taken


class Metrics:
    """This worker's metrics; `publish()` moves tallied deltas into prometheus-client."""

    def __init__(self) -> None:
        self.tally = RequestTally()
        self._registry = CollectorRegistry()
        registry = None if multiprocess_dir() else self._registry
        if multiprocess_dir():
            # prometheus-client picks its value storage when first imported. Granian forks its
            # workers from a process that imported it before `serve` set the directory: pick again.
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        self.requests = PromCounter(
            "eventapi_requests", "HTTP requests by route and status", ["route", "status"], registry=registry
        )
        self.latency = Histogram(
            "eventapi_request_duration_seconds",
            "Time to answer a request, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lru = PromCounter(
            "eventapi_lru", "Response cache look-ups by result", ["result"], registry=registry
        )
        self.refresh_runs = PromCounter(
            "eventapi_refresh_runs", "Refresh cycles by outcome", ["outcome"], registry=registry
        )
        self.refresh_duration = Histogram(
            "eventapi_refresh_duration_seconds",
            "Duration of refreshes that fetched a feed",
            buckets=REFRESH_BUCKETS,
            registry=registry,
        )
        self.plans_skipped = PromCounter(
            "eventapi_plans_skipped", "Unreadable plans skipped, by kind", ["kind"], registry=registry
        )
        self.events_served = Gauge(
            "eventapi_events_served",
            "Events served after the last refresh",
            multiprocess_mode="max",
            registry=registry,
        )
        self.generation = Gauge(
            "eventapi_generation",
            "Store generation this worker serves",
            multiprocess_mode="max",
            registry=registry,
        )
        self.provider_bytes = Gauge(
            "eventapi_provider_response_bytes",
            "Size of the provider's last feed",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self._lru_seen = {"hit": 0, "miss": 0, "eviction": 0}
        self._runs_seen: Counter[str] = Counter()

    def publish(self) -> None:
        """Move what was tallied since the last call into the exported metrics."""
        requests, buckets, seconds = self.tally.take()
        for (route, status), count in requests.items():
            self.requests.labels(route, str(status)).inc(count)
        for route, counts in buckets.items():
            child = self.latency.labels(route)
            # prometheus-client keeps non-cumulative per-bucket values: add each bucket's delta.
            for index, count in enumerate(counts):
                if count:
                    child._buckets[index].inc(count)
            child._sum.inc(seconds[route])

    def publish_lru(self, hits: int, misses: int, evictions: int) -> None:
        """Cache counters are running totals; export the growth since the last call."""
        for result, total in (("hit", hits), ("miss", misses), ("eviction", evictions)):
            if total > self._lru_seen[result]:
                self.lru.labels(result).inc(total - self._lru_seen[result])
            self._lru_seen[result] = total

    def publish_runs(self, runs: Mapping[str, int]) -> None:
        for outcome, total in runs.items():
            if total > self._runs_seen[outcome]:
                self.refresh_runs.labels(outcome).inc(total - self._runs_seen[outcome])
                self._runs_seen[outcome] = total

    def exposition(self) -> bytes:
        """The text format of every worker's metrics (or this process's, outside multiprocess mode)."""
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def worker_exited(self) -> None:
        directory = multiprocess_dir()
        if directory is not None:
            multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]
