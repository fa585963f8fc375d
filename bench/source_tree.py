"""Running the service from another source tree (an older commit, say), so one harness measures both.

`git archive REV | tar -x -C DIR` (or `git worktree add DIR REV`), then a benchmark's `--source DIR`:
its eventapi commands run with DIR as their working directory and first on PYTHONPATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ProcessError, clean_env


def source_path(source: Path) -> dict[str, str]:
    """The PYTHONPATH that imports eventapi from `source` first, for every command of the run."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")]))}


def imported_from(source: Path) -> str:
    """Where `import eventapi` resolves with source_path: ProcessError unless inside `source`."""
    found = subprocess.run(
        [sys.executable, "-c", "import eventapi; print(eventapi.__file__)"],
        cwd=source,
        env=clean_env(source_path(source)),
        capture_output=True,
        text=True,
        check=False,
    )
    path = found.stdout.strip()
    if found.returncode != 0 or not Path(path).resolve().is_relative_to(source.resolve()):
        raise ProcessError(f"eventapi does not import from {source}: {path or found.stderr.strip()[-300:]}")
    return path


def source_revision(source: Path) -> str | None:
    """The commit of a git checkout, with "+dirty" when eventapi/ differs from it; None elsewhere."""
    if not (source / ".git").exists():
        return None
    git = ["git", "--no-optional-locks", "-C", str(source)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "eventapi"], check=False).returncode != 0
    return head.stdout.strip() + ("+dirty" if dirty else "") if head.returncode == 0 else None
