"""Benchmarks of the feed parser: expat (`xml_feed`) against lxml (`lxml_feed`), one group per input.

Every benchmark also asserts that the parser it timed gave the same answer as the other one.
"""

from __future__ import annotations

import zoneinfo

import lxml_feed
import pytest
from compare import NO_CAP, Parse, first_difference, outcome
from pytest_benchmark.fixture import BenchmarkFixture

from eventapi.refresh import xml_feed as feed

PARSERS: dict[str, Parse] = {"expat": feed.parse, "lxml": lxml_feed.parse}
MADRID = zoneinfo.ZoneInfo("Europe/Madrid")


def assert_same_as_other_parser(parser: str, document: bytes, answer: feed.ParsedFeed) -> None:
    (other,) = set(PARSERS) - {parser}
    difference = first_difference(outcome(PARSERS[other], document, MADRID), answer)
    assert difference is None, f"{other} against {parser}: {difference}"


@pytest.mark.benchmark(group="response_1.xml")
@pytest.mark.parametrize("parser", PARSERS)
def test_parse_sample(benchmark: BenchmarkFixture, parser: str, sample_documents: dict[str, bytes]) -> None:
    """The provider's first sample answer: three plans, per-call overhead dominates."""
    document = sample_documents["response_1.xml"]
    answer = benchmark(PARSERS[parser], document, MADRID, NO_CAP)
    assert_same_as_other_parser(parser, document, answer)


@pytest.mark.benchmark(group="1000 plans x 20 zones")
@pytest.mark.parametrize("parser", PARSERS)
def test_parse_1k_plans_20_zones(benchmark: BenchmarkFixture, parser: str, feed_1k_20: bytes) -> None:
    """A generated feed of about the provider's usual size."""
    answer = benchmark(PARSERS[parser], feed_1k_20, MADRID, NO_CAP)
    assert_same_as_other_parser(parser, feed_1k_20, answer)


@pytest.mark.benchmark(group="5000 plans x 200 zones")
@pytest.mark.parametrize("parser", PARSERS)
def test_parse_5k_plans_200_zones(benchmark: BenchmarkFixture, parser: str, feed_5k_200: bytes) -> None:
    """The big generated feed, a million zones: three rounds keep the run within minutes."""
    answer = benchmark.pedantic(  # type: ignore[no-untyped-call]
        PARSERS[parser], args=(feed_5k_200, MADRID, NO_CAP), rounds=3, iterations=1
    )
    assert_same_as_other_parser(parser, feed_5k_200, answer)


def test_parsers_agree_on_every_sample(sample_documents: dict[str, bytes]) -> None:
    """Both parsers give the same events and skipped plans for each sample bundled with the package."""
    for name, document in sample_documents.items():
        expected = outcome(feed.parse, document, MADRID)
        assert isinstance(expected, feed.ParsedFeed), f"{name}: expat raised {expected}"
        difference = first_difference(expected, outcome(lxml_feed.parse, document, MADRID))
        assert difference is None, f"{name}: {difference}"


def test_parsers_agree_on_a_generated_feed(feed_1k_20: bytes) -> None:
    """Both parsers give the same 1,000-plan feed, whole or streamed in 64 KiB chunks."""
    expected = feed.parse(feed_1k_20, MADRID, NO_CAP)
    assert len(expected.events) >= 1_000
    assert first_difference(expected, lxml_feed.parse(feed_1k_20, MADRID, NO_CAP)) is None
    streamed = lxml_feed.LxmlFeedParser(MADRID, NO_CAP)
    for offset in range(0, len(feed_1k_20), 64 * 1024):
        streamed.feed(feed_1k_20[offset : offset + 64 * 1024])
    assert first_difference(expected, streamed.close()) is None
