"""Feeds for the parser benchmarks, read or generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventapi.simfeed import generate_feed

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
# A fixed seed: every run, on every machine, measures the same bytes.
SEED = 2027


@pytest.fixture(scope="session")
def sample_documents() -> dict[str, bytes]:
    """The provider's sample answers in tests/fixtures, by file name."""
    return {path.name: path.read_bytes() for path in sorted(FIXTURES.glob("*.xml"))}


@pytest.fixture(scope="session")
def feed_1k_20() -> bytes:
    """1,000 base plans with 20 zones per plan: about 2.4 MB."""
    return generate_feed(1_000, 20, seed=SEED)


@pytest.fixture(scope="session")
def feed_5k_200() -> bytes:
    """5,000 base plans with 200 zones per plan: about 105 MB, over the service's 64 MiB cap."""
    return generate_feed(5_000, 200, seed=SEED)
