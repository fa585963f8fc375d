"""requirements/runtime.txt, what the image installs: it pins every runtime dependency, with hashes."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements" / "runtime.txt"


def pins() -> dict[str, tuple[Version, Marker | None, list[str]]]:
    """Each pinned name: its version, its marker and its hashes."""
    found: dict[str, tuple[Version, Marker | None, list[str]]] = {}
    # A requirement continues over backslash-ended lines; comments start with '#'.
    for entry in re.sub(r"\\\n\s*", " ", LOCK.read_text()).splitlines():
        entry = entry.split(" #")[0].strip()
        if not entry or entry.startswith("#"):
            continue
        hashes = re.findall(r"--hash=(sha256:[0-9a-f]{64})", entry)
        requirement = Requirement(re.sub(r"\s*--hash=\S+", "", entry))
        [specifier] = requirement.specifier
        assert specifier.operator == "==", entry
        found[canonicalize_name(requirement.name)] = (Version(specifier.version), requirement.marker, hashes)
    return found


def runtime_dependencies() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(dependency) for dependency in project["dependencies"]]


def test_every_runtime_dependency_is_pinned_within_its_range_with_hashes() -> None:
    """A dependency added to pyproject.toml but not to the lock would be missing from the image."""
    pinned = pins()
    for dependency in runtime_dependencies():
        name = canonicalize_name(dependency.name)
        assert name in pinned, f"{dependency.name} is not pinned in {LOCK.name}: run make lock"
        version, _, hashes = pinned[name]
        assert dependency.specifier.contains(version), f"{name}=={version} is outside {dependency}"
        assert hashes, f"{name} has no --hash in {LOCK.name}"


def test_extras_of_runtime_dependencies_are_pinned_too() -> None:
    """redis[hiredis]: the extra's packages are runtime dependencies as much as redis itself."""
    pinned = pins()
    for dependency in runtime_dependencies():
        for extra in dependency.extras:
            for requirement in map(Requirement, importlib.metadata.requires(dependency.name) or []):
                if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}):
                    assert canonicalize_name(requirement.name) in pinned, f"{requirement.name} ({dependency})"


def test_every_pin_carries_hashes() -> None:
    """pip --require-hashes refuses the whole lock over one unhashed line, transitive ones included."""
    assert all(hashes for _, _, hashes in pins().values())


def test_the_image_installs_from_the_lock_with_hashes_and_adds_nothing() -> None:
    containerfile = (REPO / "Containerfile").read_text()
    assert "--require-hashes" in containerfile and "-r requirements/runtime.txt" in containerfile
    assert "--no-deps --no-index /tmp/wheels/eventapi-" in containerfile and "pip check" in containerfile
    assert "!requirements/runtime.txt" in (REPO / ".containerignore").read_text().splitlines()
