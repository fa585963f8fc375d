"""Logging set-up for the service's processes."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """One line per record on stderr, at the configured level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
