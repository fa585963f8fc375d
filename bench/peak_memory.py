"""Peak memory of each parser on the 5,000 x 200 feed, one fresh subprocess per parser and way of feeding.

Run from the repository root: `python bench/peak_memory.py` (eventapi must be importable: installed, or
PYTHONPATH=.). Linux only: the peak is the kernel's VmHWM, reset just before parsing. RSS is what counts,
since libxml2 allocates outside Python's allocator where tracemalloc cannot see; the tracemalloc peak is
shown for the Python side alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zoneinfo
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import Protocol

import lxml_feed
from compare import NO_CAP, Parse

from eventapi.refresh import xml_feed as feed
from eventapi.refresh.work import ParsedFeed
from eventapi.sim.feeds import generate_feed

MADRID = zoneinfo.ZoneInfo("Europe/Madrid")
# The provider client's chunk size (eventapi/provider.py): how the service really feeds the parser.
CHUNK_BYTES = 64 * 1024


class IncrementalParser(Protocol):
    def feed(self, chunk: bytes) -> None: ...
    def close(self) -> ParsedFeed: ...


PARSERS: dict[str, tuple[Parse, Callable[[tzinfo, int], IncrementalParser]]] = {
    "expat": (feed.parse, feed.FeedParser),
    "lxml": (lxml_feed.parse, lxml_feed.LxmlFeedParser),
}
MODES = ("whole", "streamed")


def measure(parser: str, mode: str, path: Path, traced: bool) -> dict[str, float]:
    """Parse the feed at `path` once and report the peak memory above what was held before parsing."""
    parse, parser_class = PARSERS[parser]
    # "whole" holds the document in memory, as parse() needs; "streamed" reads it as the network would.
    document = path.read_bytes() if mode == "whole" else b""
    gc.collect()
    if traced:
        tracemalloc.start()
    rss_before = _reset_peak_rss()
    started = time.perf_counter()
    if mode == "whole":
        parsed = parse(document, MADRID, NO_CAP)
    else:
        incremental = parser_class(MADRID, NO_CAP)
        with path.open("rb") as body:
            while chunk := body.read(CHUNK_BYTES):
                incremental.feed(chunk)
        parsed = incremental.close()
    seconds = time.perf_counter() - started
    rss_after = _status_kib("VmHWM")
    python_peak = tracemalloc.get_traced_memory()[1] if traced else 0
    return {
        "seconds": seconds,
        "rss_peak_above_start_mib": (rss_after - rss_before) / 1024,
        "rss_peak_mib": rss_after / 1024,
        "python_peak_mib": python_peak / 2**20,
        "events": len(parsed.events),
    }


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def _reset_peak_rss() -> int:
    # ru_maxrss cannot serve: Linux carries the parent's high-water mark across fork and exec.
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def run_child(parser: str, mode: str, path: Path, traced: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", parser, mode, str(path)] + (
        ["--traced"] if traced else []
    )
    answer: dict[str, float] = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
    return answer


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--plans", type=int, default=5_000)
    options.add_argument("--zones", type=int, default=200)
    options.add_argument("--seed", type=int, default=2027, help="the seed bench/conftest.py uses")
    options.add_argument("--child", nargs=3, metavar=("PARSER", "MODE", "PATH"), help=argparse.SUPPRESS)
    options.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.child:
        parser, mode, path = args.child
        print(json.dumps(measure(parser, mode, Path(path), args.traced)))
        return
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "feed.xml"
        path.write_bytes(generate_feed(args.plans, args.zones, seed=args.seed))
        print(f"feed: {args.plans} plans x {args.zones} zones, {path.stat().st_size:,} bytes")
        print(
            f"{'parser':6} {'mode':8} {'seconds':>8} {'RSS peak':>10} {'above start':>12} {'Python peak':>12}"
        )
        for mode in MODES:
            for parser in PARSERS:
                rss = run_child(parser, mode, path, traced=False)
                traced = run_child(parser, mode, path, traced=True)
                print(
                    f"{parser:6} {mode:8} {rss['seconds']:8.2f} {rss['rss_peak_mib']:7.1f} MiB"
                    f" {rss['rss_peak_above_start_mib']:8.1f} MiB {traced['python_peak_mib']:8.1f} MiB"
                )


if __name__ == "__main__":
    main()
