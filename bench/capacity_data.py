"""Data scaling for docs/capacity.md: what one data set size costs in Redis, in a refresh and in answers.

Run once per size in a child process of `bench.capacity`, so the peak RSS it reports belongs to that size
alone (the merge runs here as it runs in a worker's job server). For a size: Redis memory, the
per-worker day copy, the merge into an empty store and the unchanged merge (each with the service's own
store, 1 s socket timeout, and again with a long one to time the work when the short one fails), the
whole-generation read a day copy loads, answer sizes (a month, the popular range, a year, everything)
with gzip, and the per-miss read from Redis when the day copy does not fit.

    .venv/bin/python -m bench.capacity_data --size 10000 --redis-url redis://HOST:PORT/0
    .venv/bin/python -m bench.capacity_data --size 10000 --redis-url redis://HOST:PORT/0 --routine-refresh
    .venv/bin/python -m bench.capacity_data --parse-plans 11364
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from eventapi.days import count_in
from eventapi.errors import StoreUnavailable
from eventapi.events import Event, event_id
from eventapi.http import gzip_codec
from eventapi.http.search import assemble
from eventapi.query import TimeRange, parse_query
from eventapi.refresh.xml_feed import parse
from eventapi.settings import Settings
from eventapi.sim.feeds import generate_feed
from eventapi.store import DayRead
from eventapi.store.redis import RedisStore

# The seven years of bench-http's seven-year stack (2027-01-01 to 2033-12-31, 2,557 days).
FIRST_DAY = date(2027, 1, 1)
DAYS = 2557
YEARS = range(2027, 2034)
# The popular range of bench-http and the load tests (tests/support/stack.py's PROBE_PATH).
POPULAR_QUERY = b"starts_at=2027-03-01&ends_at=2027-03-31"
# The service's own store gives up on a socket operation after 1 s (RedisStore's default); this one
# times the same work when that is too short.
LONG_TIMEOUT = 600.0
# Misses read from Redis when the copy does not fit: ranges of 3 to 28 days, as bench-http's misses.
MISS_READS = 200
SETTINGS = Settings()
# Two words per title, as the simulator's generated feed writes them (some need escaping in XML).
_WORDS = (
    "Concierto", "Gala", "Rock & Roll", "Tributo", "Ñandú", "Noche", "Flamenco", '"Clásicos"', "Jazz",
    "Ópera", "<Live>", "Teatro", "Humor", "Sinfonía", "Fiesta", "O'Brien",
)  # fmt: skip


def build_events(count: int, seed: int = 1) -> list[Event]:
    """`count` online events over the seven years, shaped as the generated feed's: starts from 09:00 to
    23:59, 30 to 240 minutes long, prices from 5 to 250 (building them skips XML, which is parsed apart)."""
    rng = random.Random(seed)
    midnight = datetime.combine(FIRST_DAY, datetime.min.time())
    events = []
    for index in range(count):
        start = midnight + timedelta(days=rng.randrange(DAYS), minutes=rng.randrange(9 * 60, 24 * 60))
        end = start + timedelta(minutes=rng.randint(30, 240))
        low = float(rng.randint(5, 150))
        base_plan_id, plan_id = str(1000 + index), str(rng.randint(1, 3000))
        title = " ".join(rng.sample(_WORDS, 2))
        events.append(
            Event(event_id(base_plan_id, plan_id), base_plan_id, plan_id, title, start, end, low,
                  low + rng.randint(0, 100), True)
        )  # fmt: skip
    return events


def measure_parse(plans: int, zones: int) -> dict[str, Any]:
    """Parse time of the simulator's generated feed (`plans` base plans over the seven years)."""
    document = generate_feed(plans, zones, seed=1, days=DAYS)
    started = time.perf_counter()
    parsed = parse(document, SETTINGS.tz, max_bytes=len(document) + 1)
    seconds = time.perf_counter() - started
    online = [event for event in parsed.events if event.online]
    return {
        "plans": plans,
        "zones": zones,
        "feed_bytes": len(document),
        "events_parsed": len(parsed.events),
        "events_stored": len(online),  # offline-only events are parsed, never stored
        "seconds": seconds,
        "mb_per_s": len(document) / seconds / 1e6,
        "feed_bytes_per_stored_event": len(document) / len(online),
        "stored_events_per_s": len(online) / seconds,
        "mean_event_json_bytes": statistics.fmean(len(event.to_json()) for event in online),
    }


def json_retention(events: Sequence[Event]) -> dict[str, float]:
    """Bytes each Event.to_json() result keeps allocated, against its length (orjson's buffers)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [event.to_json() for event in events]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return {"allocated_bytes": held / len(kept), "json_bytes": statistics.fmean(map(len, kept))}


async def timed(call: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    """Run `call`; its seconds, and whether it succeeded (with the error when not)."""
    started = time.perf_counter()
    try:
        await call()
    except StoreUnavailable as exc:
        return {"ok": False, "seconds": time.perf_counter() - started, "error": str(exc)}
    return {"ok": True, "seconds": time.perf_counter() - started}


def slowest_commands(client: redis.Redis) -> dict[str, float]:
    """The longest run of each command Redis logged since the last reset, in ms (server time only)."""
    longest: dict[str, float] = {}
    for entry in client.slowlog_get(128):
        name = entry["command"].split(b" ", 1)[0].decode().lower()
        longest[name] = max(longest.get(name, 0.0), entry["duration"] / 1000)
    client.slowlog_reset()
    return dict(sorted(longest.items(), key=lambda item: -item[1]))


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def month_ranges() -> list[TimeRange]:
    """Every calendar month of the seven years, as the service reads `starts_at=…&ends_at=…`."""
    ranges = []
    for year in YEARS:
        for month in range(1, 13):
            following = date(year + month // 12, month % 12 + 1, 1)
            query = f"starts_at={year}-{month:02d}-01&ends_at={following.isoformat()}"
            ranges.append(parse_query(query.encode(), SETTINGS.tz))
    return ranges


def window(copy: DayRead, time_range: TimeRange) -> list[bytes]:
    """The blobs of a range's days, cut from a whole-generation read as the day copy does."""
    low = 0 if time_range.first_day is None else bisect.bisect_left(copy.days, time_range.first_day)
    high = (
        len(copy.days) if time_range.last_day is None else bisect.bisect_right(copy.days, time_range.last_day)
    )
    return copy.day_blobs[low:high]


def answer(copy: DayRead, time_range: TimeRange, *, compress: bool = False) -> dict[str, Any]:
    """One answer's events, bytes and assembly time (and gzip size and time)."""
    blobs = window(copy, time_range)
    started = time.perf_counter()
    body = assemble(blobs, time_range)
    figures: dict[str, Any] = {
        "events": sum(count_in(blob, time_range.starts_at, time_range.ends_at) for blob in blobs),
        "bytes": len(body),
        "assemble_s": time.perf_counter() - started,
    }
    if compress:
        started = time.perf_counter()
        figures["gzip_bytes"] = len(gzip_codec.compress(body))
        figures["gzip_s"] = time.perf_counter() - started
    return figures


def answers(copy: DayRead) -> dict[str, Any]:
    """The answers whose size matters: a typical month (the median of the 84), the largest month, the
    popular range, the busiest year, and everything (`GET /search` with no bounds)."""
    months = sorted(month_ranges(), key=lambda each: answer(copy, each)["bytes"])
    years = {year: parse_query(f"starts_at={year}-01-01&ends_at={year + 1}-01-01".encode(), SETTINGS.tz)
             for year in YEARS}  # fmt: skip
    busiest = max(years, key=lambda year: answer(copy, years[year])["events"])
    return {
        "typical_month": answer(copy, months[len(months) // 2], compress=True),
        "largest_month": answer(copy, months[-1], compress=True),
        "popular": answer(copy, parse_query(POPULAR_QUERY, SETTINGS.tz), compress=True),
        "busiest_year": {"year": busiest} | answer(copy, years[busiest], compress=True),
        "everything": answer(copy, TimeRange(None, None), compress=True),
    }


async def miss_reads(store: RedisStore, client: redis.Redis, rng: random.Random) -> dict[str, Any]:
    """A miss's cost when the day copy does not fit: one Lua read, timed here and inside Redis."""
    client.config_resetstat()
    first = FIRST_DAY.toordinal()
    seconds, sizes, failures = [], [], 0
    for _ in range(MISS_READS):
        start_day = first + rng.randrange(DAYS - 28)
        last_day = start_day + rng.randint(3, 28)
        started = time.perf_counter()
        try:
            read = await store.read_days(start_day, last_day)
        except StoreUnavailable:
            failures += 1
            continue
        seconds.append(time.perf_counter() - started)
        sizes.append(sum(map(len, read.day_blobs)))
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    ordered = sorted(seconds)
    return {
        "reads": MISS_READS,
        "failures": failures,
        "client_ms_p50": 1000 * ordered[len(ordered) // 2] if ordered else None,
        "client_ms_p99": 1000 * ordered[int(len(ordered) * 0.99)] if ordered else None,
        "redis_us_per_call": stats.get("usec_per_call"),
        "mean_blob_bytes": statistics.fmean(sizes) if sizes else None,
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def merges(count: int, service: RedisStore, patient: RedisStore, client: redis.Redis) -> dict[str, Any]:
    """Fill an empty store, then merge the same events again: each with the service's store and timed."""
    started = time.perf_counter()
    events = build_events(count)
    figures: dict[str, Any] = {
        "build_s": time.perf_counter() - started,
        "rss_after_build_mib": peak_rss_mib(),
    }
    empty_memory = used_memory(client)
    # The first fill as a refresh does it (the service's store), then timed with a patient one.
    figures["merge_empty_service"] = await timed(lambda: service.merge(events))
    client.flushall()
    figures["merge_empty"] = await timed(lambda: patient.merge(events))
    figures["merge_empty_slowest_ms"] = slowest_commands(client)
    sample = events[:10_000]
    figures["redis"] = {
        "used_memory": used_memory(client) - empty_memory,
        "events_hash": client.memory_usage(patient.keys["events"], samples=0),
        "day_blobs_hash": client.memory_usage(patient.keys["day_blobs"], samples=0),
        "days_zset": client.memory_usage(patient.keys["days"], samples=0),
        "event_json_bytes": statistics.fmean(len(event.to_json()) for event in sample),
    }
    # Every merge starts with HGETALL of every stored event: one reply the 1 s socket timeout bounds.
    started = time.perf_counter()
    await patient.client.hgetall(patient.keys["events"])
    figures["events_hgetall_s"] = time.perf_counter() - started
    # Most refreshes: the same feed again (HGETALL of every stored event, decode, compare).
    figures["merge_unchanged"] = await timed(lambda: patient.merge(events))
    figures["merge_unchanged_slowest_ms"] = slowest_commands(client)
    figures["merge_unchanged_service"] = await timed(lambda: service.merge(events))
    figures["rss_peak_mib"] = peak_rss_mib()
    return figures


async def reads(service: RedisStore, patient: RedisStore, client: redis.Redis) -> dict[str, Any]:
    """A day copy's load (every worker, once per generation), which is also the no-bounds search without
    one; a `starts_at`-only read (Lua, every day); the answers; the per-miss read without a copy."""
    client.slowlog_reset()
    client.config_resetstat()
    figures: dict[str, Any] = {"whole_read_service": await timed(lambda: service.read_days(None, None))}
    started = time.perf_counter()
    copy = await patient.read_days(None, None)
    figures["whole_read"] = {"ok": True, "seconds": time.perf_counter() - started}
    # Redis's own time per whole read (its HGETALL of the day blobs): what N workers' loads queue for.
    figures["whole_read_redis_ms"] = client.info("commandstats")["cmdstat_hgetall"]["usec_per_call"] / 1000
    figures["day_blob_bytes"] = sum(map(len, copy.day_blobs))
    figures["days"] = len(copy.days)
    first_day = copy.days[0]
    figures["half_open_read_service"] = await timed(lambda: service.read_days(first_day, None))
    figures["half_open_read"] = await timed(lambda: patient.read_days(first_day, None))
    figures["whole_read_slowest_ms"] = slowest_commands(client)
    figures["answers"] = answers(copy)
    figures["miss_reads"] = await miss_reads(service, client, random.Random(7))
    return figures


async def routine_refresh_peak(count: int, redis_url: str) -> dict[str, Any]:
    """Peak RSS of an unchanged merge alone (most refreshes), on the store `measure_size` left filled."""
    events = build_events(count)
    figures: dict[str, Any] = {"rss_after_build_mib": peak_rss_mib()}
    patient = RedisStore(redis_url, timeout=LONG_TIMEOUT)
    await patient.open()
    try:
        outcome = await patient.merge(events)
    finally:
        await patient.close()
    if outcome.changed or outcome.served != count:
        raise RuntimeError(f"expected an unchanged store of {count} events, merged {outcome}")
    return figures | {"rss_peak_mib": peak_rss_mib()}


async def measure_size(count: int, redis_url: str) -> dict[str, Any]:
    """Every figure of one data set size, in a Redis the caller gives (flushed first)."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.config_set("slowlog-log-slower-than", 10_000)  # 10 ms
    client.slowlog_reset()
    service, patient = RedisStore(redis_url), RedisStore(redis_url, timeout=LONG_TIMEOUT)
    await service.open()
    await patient.open()
    try:
        figures = {"events": count} | await merges(count, service, patient, client)
        return figures | await reads(service, patient, client)
    finally:
        await service.close()
        await patient.close()
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, help="events in the store")
    parser.add_argument("--redis-url", help="a Redis to flush and fill")
    parser.add_argument(
        "--parse-plans", type=int, help="instead: parse time of a generated feed of this many plans"
    )
    parser.add_argument("--zones", type=int, default=20, help="zones per generated plan (default 20)")
    parser.add_argument(
        "--routine-refresh", action="store_true", help="after --size: the unchanged merge's peak RSS alone"
    )
    options = parser.parse_args(argv)
    if options.parse_plans:
        result = measure_parse(options.parse_plans, options.zones)
        result["json_retention"] = json_retention(build_events(10_000))
    elif options.size and options.redis_url and options.routine_refresh:
        result = asyncio.run(routine_refresh_peak(options.size, options.redis_url))
    elif options.size and options.redis_url:
        result = asyncio.run(measure_size(options.size, options.redis_url))
    else:
        parser.error("give --size and --redis-url, or --parse-plans")
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
