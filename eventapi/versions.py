"""Versions of the stored history: a generation number and the epoch of the merge that made it."""

from __future__ import annotations

import secrets
from typing import NamedTuple


class Version(NamedTuple):
    """Which state of the store bytes come from: the generation, and the epoch of the merge that made it.

    A lost history (a flushed Redis, a failover) can issue a generation number again, never its epoch.
    """

    generation: int
    epoch: str  # "" for a Redis store written before epochs existed (layout 1)


def new_epoch() -> str:
    """A fresh epoch: 48 random bits, drawn by every merge that changes something served."""
    return secrets.token_hex(6)
