"""Keeping the cyclic garbage collector off the serving path (docs/decisions/012-no-collector-stalls.md).

A full collection walks every tracked object: the tens of thousands that imports and start-up leave
behind would be walked again and again. Frozen, they are out of its reach; what the worker keeps
later (cached answers, day copies) is kept in forms it does not track.
"""

from __future__ import annotations

import gc


def freeze_start_up() -> None:
    """Collect what start-up left as garbage, then move everything still alive out of the GC's reach."""
    gc.collect()
    gc.freeze()


def freeze_new_day_copy() -> None:
    """Move a freshly loaded day copy (and whatever else is alive) out of the GC's reach.

    Only the young generations are collected first (a full collection would be the very pause
    this avoids): that frees young cyclic garbage and lets the GC stop tracking young tuples of
    atoms, which frozen would stay tracked, and keep tracked every tuple that holds them.
    """
    gc.collect(1)
    gc.freeze()


class YoungCollections:
    """A collection of the young generation after every `every` answers the worker caches.

    CPython starts one when allocations outnumber deallocations by 700. A full LRU frees an old
    entry for each new one, so that never happens: the young generation grows by every new
    entry until some other allocation tips it, and that collection then walks them all at once
    (94 ms of CPU measured; decision 012). Collected this often, each walk is short.
    """

    def __init__(self, every: int = 256) -> None:
        self._every = every
        self._cached = 0

    def __call__(self) -> None:
        self._cached += 1
        if self._cached >= self._every:
            self._cached = 0
            gc.collect(0)
