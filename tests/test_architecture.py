"""The folder tree is the architecture: the core depends on nothing else, each adapter on the core only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "eventapi"
ADAPTERS = ("http", "refresh", "store", "sim", "observability")
# The composition root and the command line wire everything: they may import anything.
WIRING = {"eventapi.wiring", "eventapi.cli", "eventapi.__main__", "eventapi"}
# What an adapter may use besides the core and itself: the Store protocol (not its implementations).
SHARED_PROTOCOLS = {"eventapi.store"}


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return name.removesuffix(".__init__")


def part_of(module: str) -> str:
    """ "core" for a module at the package root, else the adapter it belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ADAPTERS) else "core"


def imported(path: Path) -> set[str]:
    """The eventapi modules a file imports (`from eventapi import x` names module x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "eventapi":
            if node.module == "eventapi":
                found.update(f"eventapi.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "eventapi")
    return found


MODULES = sorted(
    (module_name(path), path) for path in PACKAGE.rglob("*.py") if module_name(path) not in WIRING
)


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_modules_import_only_the_core_their_own_part_and_the_store_protocol(module: str, path: Path) -> None:
    """A change to the feed format, the store or the HTTP contract stays in its folder (and the core)."""
    own = part_of(module)
    allowed = {"core", own}
    wrong = sorted(
        name
        for name in imported(path)
        if part_of(name) not in allowed and not (own != "core" and name in SHARED_PROTOCOLS)
    )
    assert not wrong, f"{module} ({own}) imports {wrong}"


def test_the_rule_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The check itself works: the core importing an adapter is caught."""
    stray = tmp_path / "stray.py"
    stray.write_text("from eventapi.http.search import assemble\nfrom eventapi import events\n")
    assert imported(stray) == {"eventapi.http.search", "eventapi.events"}
    assert part_of("eventapi.http.search") == "http" and part_of("eventapi.events") == "core"
    assert part_of("eventapi.store") == "store" and part_of("eventapi.store.redis") == "store"
