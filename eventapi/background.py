"""A worker's background tasks: a death is logged when it happens and remembered; stop never raises.

A task that dies silently leaves a worker serving ever older data; remembered, it makes the
worker not ready (`/readyz` names it), so an orchestrator routes around it and restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BackgroundTasks:
    """Named long-running tasks on the running loop."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.deaths: dict[str, str] = {}  # task name -> what ended it

    def start(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `run()` as a task; it is meant to run until stopped."""
        task = asyncio.get_running_loop().create_task(run(), name=name)
        task.add_done_callback(self._ended)
        self._tasks[name] = task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        reason = "returned" if exc is None else f"{exc.__class__.__name__}: {exc}"
        self.deaths[task.get_name()] = reason
        log.error(
            "background task %s died: %s", task.get_name(), reason,
            exc_info=None if exc is None else (type(exc), exc, exc.__traceback__),
        )  # fmt: skip

    async def stop(self) -> None:
        """Cancel every task, newest first, and wait for each to unwind; a death was logged already."""
        for name in reversed(list(self._tasks)):
            task = self._tasks.pop(name)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
