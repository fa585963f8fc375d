"""Who used the CPU (Linux /proc): each started process group, and everything else on the machine.

On a shared 2-core box a load test is only worth its figures when nothing else ran meanwhile, so the
harness waits for a quiet box before measuring and reports what "other" processes used during the run.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
BUILD_PATTERN = "podman|buildah|debootstrap"


def group_seconds(groups: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of every live process in each named process group (pgid)."""
    names = {pgid: name for name, pgid in groups.items()}
    seconds = dict.fromkeys(groups, 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # After "(comm)": state ppid pgrp ...; utime, stime, cutime, cstime are fields 12 to 15
            # (the reaped children's share counts too: the service's refresh jobs are its children).
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if (name := names.get(int(fields[2]))) is not None:
                seconds[name] += sum(int(ticks) for ticks in fields[11:15]) / TICK
    return seconds


def machine_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = Path("/proc/stat").read_text().split()[1:9]
    return sum(int(ticks) for ticks in (user, nice, system, irq, softirq, steal)) / TICK


class CpuMeter:
    """Cores used between two snapshots by each group, and by the rest of the machine ("other")."""

    def __init__(self, groups: Mapping[str, int]) -> None:
        self.groups = dict(groups)

    def snapshot(self) -> dict[str, float]:
        # Locust has exited by the last snapshot, so its share is read as this process's reaped children.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        waited = {"children": children.ru_utime + children.ru_stime}
        return group_seconds(self.groups) | waited | {"machine": machine_seconds(), "at": time.monotonic()}

    def cores(self, before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
        elapsed = after["at"] - before["at"]
        used = {name: (after[name] - before.get(name, 0.0)) / elapsed for name in self.groups}
        if "locust" in used:  # alive at the first snapshot (barely started), reaped by the last
            used["locust"] = (after["children"] - before["children"]) / elapsed
        machine = (after["machine"] - before["machine"]) / elapsed
        # A process that exited meanwhile (a refresh job) drops out of its group's sum: clamp at 0.
        return used | {"other": max(machine - sum(used.values()), 0.0), "machine": machine}


def builds_running() -> list[str]:
    """Container builds on the box (the usual noisy neighbour), as `pid name` lines (matched on the name)."""
    done = subprocess.run(["pgrep", "-a", BUILD_PATTERN], capture_output=True, text=True)
    return done.stdout.splitlines()


def wait_for_quiet(meter: CpuMeter, max_other: float, timeout: float, sample: float = 2.0) -> float:
    """Sample until other processes use under `max_other` cores (or `timeout` passes); their last share."""
    deadline = time.monotonic() + timeout
    while True:
        before = meter.snapshot()
        time.sleep(sample)
        other = meter.cores(before, meter.snapshot())["other"]
        if other < max_other or time.monotonic() > deadline:
            return other
        builds = builds_running()
        print(
            f"load: box busy: other processes use {other:.0%} of a core, "
            f"{len(builds)} build processes; waiting"
        )


class Sampler(threading.Thread):
    """Each second, the cores of every group and of "other": averages hide a neighbour's burst."""

    def __init__(self, meter: CpuMeter, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.meter = meter
        self.every = every
        self.seconds: list[dict[str, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        before = self.meter.snapshot()
        while not self._stop_event.wait(self.every):
            after = self.meter.snapshot()
            # Per second the live locust group is read from /proc, not from the reaped children.
            used = {
                name: (after[name] - before[name]) / (after["at"] - before["at"])
                for name in self.meter.groups
            }
            machine = (after["machine"] - before["machine"]) / (after["at"] - before["at"])
            self.seconds.append(used | {"other": max(machine - sum(used.values()), 0.0), "machine": machine})
            before = after

    def finish(self) -> dict[str, float]:
        """Stop; the busiest second of "other" and of the machine, and how many seconds "other" was busy."""
        self._stop_event.set()
        self.join()
        others = [second["other"] for second in self.seconds] or [0.0]
        machines = [second["machine"] for second in self.seconds] or [0.0]
        return {
            "other_max": max(others),
            "other_seconds_over_0.2": float(sum(other > 0.2 for other in others)),
            "machine_max": max(machines),
            "seconds": float(len(self.seconds)),
        }
