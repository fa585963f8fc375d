"""Time and size of gzip (and its rivals) on the service's own answers: decision 013's table.

Compresses the popular answer and 300 miss answers (3 to 28 days) of the one-year generated feed
with each codec installed (zlib always; isal, zlib-ng, brotli, zstandard when importable: `pip install`
them into the venv to compare), printing the best of five timings and the size as a share of identity.

    .venv/bin/python -m bench.compression_codecs
"""

from __future__ import annotations

import asyncio
import gzip
import importlib
import random
import statistics
import time
import zoneinfo
from collections.abc import Callable
from datetime import date, timedelta

from eventapi.http.search import assemble
from eventapi.query import parse_query
from eventapi.refresh.xml_feed import parse
from eventapi.sim.feeds import generate_feed
from eventapi.store.memory import MemoryStore

MADRID = zoneinfo.ZoneInfo("Europe/Madrid")
Compress = Callable[[bytes], bytes]


async def answers() -> tuple[bytes, list[bytes]]:
    """The popular answer and 300 miss answers, as the service assembles them."""
    store = MemoryStore()
    await store.merge(parse(generate_feed(3000, 20, seed=2027), MADRID).events)

    async def answer(query: str) -> bytes:
        time_range = parse_query(query.encode(), MADRID)
        read = await store.read_days(time_range.first_day, time_range.last_day)
        return assemble(read.day_blobs, time_range)

    rng = random.Random(1)
    misses = []
    for _ in range(300):
        start = date(2027, 1, 1) + timedelta(days=rng.randrange(330))
        end = start + timedelta(days=rng.randint(3, 28))
        misses.append(await answer(f"starts_at={start}T{rng.randrange(24):02d}:00:00&ends_at={end}T12:00:00"))
    return await answer("starts_at=2027-03-01&ends_at=2027-03-31"), misses


def codecs() -> dict[str, Compress]:
    """Every codec importable here, by name and level."""
    found: dict[str, Compress] = {
        f"zlib {n}": lambda b, n=n: gzip.compress(b, n, mtime=0) for n in (1, 2, 3, 6)
    }
    optional = {
        "isal": ("isal.igzip", (1, 2), lambda m, n: lambda b: m.compress(b, n, mtime=0)),
        "zlib-ng": ("zlib_ng.gzip_ng", (1, 2, 3), lambda m, n: lambda b: m.compress(b, n, mtime=0)),
        "brotli": ("brotli", (1, 4), lambda m, n: lambda b: m.compress(b, quality=n)),
        "zstd": ("zstandard", (1, 3), lambda m, n: m.ZstdCompressor(level=n).compress),
    }
    for name, (module_name, levels, make) in optional.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found.update({f"{name} {level}": make(module, level) for level in levels})
    return found


def best_of_five(compress: Compress, bodies: list[bytes], repeat: int) -> float:
    """Microseconds per body, the best of five passes."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            for body in bodies:
                compress(body)
        best = min(best, (time.perf_counter() - started) / (repeat * len(bodies)))
    return best * 1e6


def main() -> int:
    popular, misses = asyncio.run(answers())
    print(
        f"popular answer {len(popular):,} B; miss answers median {statistics.median(map(len, misses)):,.0f} B"
    )
    print(f"{'codec':12s} {'popular':>9s} {'share':>6s} {'a miss':>8s} {'share':>6s}")
    for name, compress in codecs().items():
        popular_us, miss_us = best_of_five(compress, [popular], 50), best_of_five(compress, misses, 1)
        popular_share = len(compress(popular)) / len(popular)
        miss_share = sum(len(compress(body)) for body in misses) / sum(map(len, misses))
        print(f"{name:12s} {popular_us:7.0f}us {popular_share:6.3f} {miss_us:6.0f}us {miss_share:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
