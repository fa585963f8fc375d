"""Structured logs: one JSON object per line on stderr (time, level, logger, event, fields)."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a field.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """A record as one JSON line; exceptions as a `traceback` field, never as extra lines."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "pid": record.process,
        }
        entry.update((key, value) for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def granian_log_config() -> dict[str, Any]:
    """Granian's own log lines (start, workers, shutdown) as JSON on stderr too, so every line of the
    service's output is one JSON object (docs/logging.md); its default is plain text on stdout."""
    return {
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "console": {"formatter": "json", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
        },
        "loggers": {"_granian": {"handlers": ["console"], "propagate": False}},
    }


def configure_logging(level: str) -> None:
    """JSON lines on stderr at the configured level, for this process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
