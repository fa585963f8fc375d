"""The worker's garbage-collector policy: young collections it starts itself, freezes at the right times."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from eventapi.gc_policy import YoungCollections, freeze_new_day_copy, freeze_start_up


@pytest.fixture
def young_collections_seen() -> Iterator[list[int]]:
    """Generations of the collections that run while the test does, with automatic ones off."""
    seen: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    was_enabled = gc.isenabled()
    gc.disable()  # only the collections the code under test asks for
    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)
    if was_enabled:
        gc.enable()


def test_a_young_collection_runs_after_every_nth_cached_answer(young_collections_seen: list[int]) -> None:
    """A full LRU frees an old entry per new one, which starves CPython's own young collections:
    the worker runs one itself every `every` cached answers, never in between."""
    cached = YoungCollections(every=3)
    for _ in range(8):
        cached()
    assert young_collections_seen == [0, 0]  # after the 3rd and the 6th


def test_start_up_is_collected_then_frozen_and_a_new_day_copy_only_young_then_frozen(
    young_collections_seen: list[int],
) -> None:
    """Start-up may afford a full collection; a reload under traffic may not (decision 012)."""
    try:
        freeze_start_up()
        frozen = gc.get_freeze_count()
        assert young_collections_seen == [2] and frozen > 0
        new_day_copy = [[day] for day in range(10)]  # tracked containers made after start-up
        freeze_new_day_copy()
        assert young_collections_seen == [2, 1] and gc.get_freeze_count() >= frozen + len(new_day_copy)
    finally:
        gc.unfreeze()  # the rest of the suite runs with nothing frozen
