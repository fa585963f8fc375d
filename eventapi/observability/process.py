"""This process's resident memory and open file descriptors, from /proc (Linux), for its snapshot."""

from __future__ import annotations

import os
from dataclasses import dataclass

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    resident_bytes: int
    open_fds: int


def process_figures() -> ProcessFigures | None:
    """RSS and open fds of this process now, or None without a /proc (not Linux)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
        open_fds = len(os.listdir("/proc/self/fd"))
    except (OSError, ValueError, IndexError):
        return None
    return ProcessFigures(resident_pages * _PAGE_BYTES, open_fds)
