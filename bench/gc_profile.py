"""The garbage collector's pauses in a serving worker under misses: decision 012's measurement.

One worker on Redis seeded with ~3,000 plans over seven years, wrk -t1 -c64: first every request a
new 30-day range from a random second (bench/wrk/stall.lua), then the popular range. Every process
of the service is traced by bench/gc_trace/sitecustomize.py; the worker's collections are printed
(the process with the most of them) with the wrk figures.

    .venv/bin/python -m bench.gc_profile                  # this tree
    .venv/bin/python -m bench.gc_profile --source DIR     # another tree, e.g. a worktree of an older commit
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from bench.source_tree import imported_from, source_path
from tests.support.processes import Processes, run_harness
from tests.support.stack import seed_store, start_redis, start_service, start_simulator

HERE = Path(__file__).resolve().parent
POPULAR = "/search?starts_at=2027-03-01&ends_at=2027-03-31"
SEVEN_YEARS = 7 * 365
FIGURES = ("50%", "99%", "Requests/sec")


def profile(options: argparse.Namespace, run_dir: Path) -> int:
    trace_out = run_dir / "gc"
    source = Path(options.source).resolve() if options.source else HERE.parent
    print(f"gc-profile: eventapi from {imported_from(source)}")
    tracing = {**source_path(source), "GC_TRACE_OUT": str(trace_out)}
    tracing["PYTHONPATH"] = f"{HERE / 'gc_trace'}:{tracing['PYTHONPATH']}"
    with Processes(run_dir, cwd=source, extra_env=tracing) as processes:
        redis_url = start_redis(processes)
        feed_url = start_simulator(processes, plans=3000, zones=20, seed=7, days=SEVEN_YEARS)
        print(f"gc-profile: {seed_store(processes, redis_url, feed_url)}")
        processes.stop("sim")
        settings = {
            "EVENTAPI_WORKERS": "1",
            "EVENTAPI_LOG_LEVEL": "WARNING",
            "EVENTAPI_REFRESH_INTERVAL": "3600",
        }
        url = start_service(processes, redis_url, feed_url, settings, POPULAR)
        for name, script, target in (
            ("misses", ["-s", str(HERE / "wrk" / "stall.lua")], "/"),
            ("hits", [], POPULAR),
        ):
            command = [
                "wrk",
                "-t1",
                "-c64",
                f"-d{options.duration}s",
                "--latency",
                *script,
                url + target,
                "--",
                "1",
                "0",
            ]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            figures = [
                line.strip()
                for line in output.splitlines()
                if line.strip().startswith(("50%", "99%", "Requests/sec"))
            ]
            print(f"gc-profile: {name}: {' | '.join(figures)}")
        processes.stop("service")
    traces = [json.loads(path.read_text()) for path in run_dir.glob("gc.*")]
    worker = max(traces, key=lambda trace: sum(trace[f"gen{g}"]["collections"] for g in range(3)))
    print(f"gc-profile: the worker's collections: {json.dumps(worker, indent=1)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run (default 15)")
    parser.add_argument("--source", help="run the service from this source tree")
    options = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="eventapi-gc-profile-"))
    return run_harness("gc-profile", lambda: profile(options, run_dir))


if __name__ == "__main__":
    raise SystemExit(main())
