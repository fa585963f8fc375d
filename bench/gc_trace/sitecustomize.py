"""Loaded by every Python process `bench/gc_profile.py` starts: times each garbage collection.

Records, per generation, the wall time and the thread's CPU time of every collection and the
object counts when it began, and writes a summary to `$GC_TRACE_OUT.<pid>` every second (also in
forked workers). CPU time tells a collection's own cost from the time it was preempted.
"""

import gc
import json
import os
import threading
import time

_OUT = os.environ.get("GC_TRACE_OUT")


def _install(out: str) -> None:
    records: dict[int, list[tuple[float, float, tuple[int, int, int]]]] = {0: [], 1: [], 2: []}
    started: dict[int, tuple[float, float, tuple[int, int, int]]] = {}

    def on_collection(phase: str, info: dict[str, int]) -> None:
        generation = info["generation"]
        if phase == "start":
            started[generation] = (time.perf_counter(), time.thread_time(), gc.get_count())
            return
        wall, cpu, counts = started.pop(generation, (time.perf_counter(), time.thread_time(), (0, 0, 0)))
        records[generation].append(
            ((time.perf_counter() - wall) * 1e3, (time.thread_time() - cpu) * 1e3, counts)
        )

    def summary() -> dict[str, object]:
        result: dict[str, object] = {}
        for generation, collections in records.items():
            cpu = sorted(record[1] for record in collections)
            result[f"gen{generation}"] = {
                "collections": len(cpu),
                "cpu_ms_total": round(sum(cpu), 1),
                "cpu_ms_max": round(cpu[-1], 2) if cpu else 0.0,
                "wall_ms_max": round(max((record[0] for record in collections), default=0.0), 2),
            }
        result["tracked_now"] = [len(gc.get_objects(generation)) for generation in range(3)]
        result["frozen_now"] = gc.get_freeze_count()
        return result

    def write_forever() -> None:
        while True:
            time.sleep(1)
            with open(f"{out}.{os.getpid()}", "w") as file:
                json.dump(summary(), file)

    def start() -> None:
        for collections in records.values():
            collections.clear()
        threading.Thread(target=write_forever, name="gc-trace", daemon=True).start()

    gc.callbacks.append(on_collection)
    start()
    os.register_at_fork(after_in_child=start)  # Granian forks its workers: trace them too


if _OUT:
    _install(_OUT)
