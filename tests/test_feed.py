"""The feed parser: both shapes, every mapping rule, and what it refuses."""

from __future__ import annotations

import zoneinfo
from datetime import datetime

import orjson
import pytest

from eventapi.errors import FeedError, FeedRefused
from eventapi.events import event_id
from eventapi.refresh.xml_feed import FeedParser, parse
from eventapi.sim.feeds import sample_feed

MADRID = zoneinfo.ZoneInfo("Europe/Madrid")


def read(name: str) -> bytes:
    return sample_feed(name)


def plan_xml(plans: str, root: str = "planList") -> bytes:
    return f'<?xml version="1.0"?><{root}><output>{plans}</output></{root}>'.encode()


def base_plan(inner: str, base_id: str = "1", sell_mode: str = "online", title: str = "T") -> str:
    return f'<base_plan base_plan_id="{base_id}" sell_mode="{sell_mode}" title="{title}">{inner}</base_plan>'


def plan(
    zones: str,
    plan_id: str = "10",
    start: str = "2021-06-30T21:00:00",
    end: str = "2021-06-30T22:00:00",
    sold_out: str = "false",
) -> str:
    return (
        f'<plan plan_start_date="{start}" plan_end_date="{end}" plan_id="{plan_id}" '
        f'sold_out="{sold_out}">{zones}</plan>'
    )


def zone(capacity: str = "10", price: str = "20.00", zone_id: str = "1") -> str:
    return f'<zone zone_id="{zone_id}" capacity="{capacity}" price="{price}" name="Z" numbered="true" />'


def test_both_feed_shapes_give_the_same_events() -> None:
    """The older eventList shape and the current planList shape carry the same content."""
    old, new = parse(read("response_3.xml"), MADRID), parse(read("response_3_planlist.xml"), MADRID)
    assert old.events == new.events
    assert [s.kind for s in old.skipped] == [s.kind for s in new.skipped] == ["bad_date"]


def test_sample_events_are_mapped_with_ids_dates_and_prices() -> None:
    """Each plan becomes an event with the uuid5 id, local date/time and prices over available zones."""
    events = {e.base_plan_id: e for e in parse(read("response_1.xml"), MADRID).events}
    camela = events["291"]
    assert camela.id == event_id("291", "291")
    assert (camela.title, camela.start, camela.end) == (
        "Camela en concierto",
        datetime(2021, 6, 30, 21),
        datetime(2021, 6, 30, 22),
    )
    assert (camela.min_price, camela.max_price) == (15.0, 30.0)
    assert camela.online
    assert orjson.loads(camela.to_json()) == {
        "id": camela.id,
        "title": "Camela en concierto",
        "start_date": "2021-06-30",
        "start_time": "21:00:00",
        "end_date": "2021-06-30",
        "end_time": "22:00:00",
        "min_price": 15.0,
        "max_price": 30.0,
    }


def test_repeated_plan_ids_under_different_base_plans_are_different_events() -> None:
    """Plan 1642 appears under base plans 322 and 1591: the key is (base plan, plan)."""
    events = parse(read("response_1.xml"), MADRID).events
    ids = {(e.base_plan_id, e.plan_id): e.id for e in events}
    assert ids[("322", "1642")] != ids[("1591", "1642")]


def test_zones_without_capacity_do_not_count_for_prices() -> None:
    """1591 in the second answer: the 75.00 zone is at capacity 0, so both prices are 65.00."""
    events = {e.base_plan_id: e for e in parse(read("response_2.xml"), MADRID).events}
    assert (events["1591"].min_price, events["1591"].max_price) == (65.0, 65.0)


@pytest.mark.parametrize(
    ("zones", "sold_out"),
    [
        (zone(capacity="0") + zone(capacity="0", price="5"), "false"),
        (zone(capacity="5"), "true"),
        ("", "false"),
    ],
    ids=["all-zones-full", "sold-out", "no-zones"],
)
def test_prices_are_null_when_nothing_is_on_sale(zones: str, sold_out: str) -> None:
    """No zone with capacity, or a sold-out plan, gives null prices (still served)."""
    (event,) = parse(plan_xml(base_plan(plan(zones, sold_out=sold_out))), MADRID).events
    assert (event.min_price, event.max_price) == (None, None)


def test_impossible_date_skips_only_that_plan() -> None:
    """Sample 444 has 2021-09-31: that plan is skipped with its ids and reason, the rest stays."""
    parsed = parse(read("response_2.xml"), MADRID)
    assert {e.base_plan_id for e in parsed.events} == {"291", "1591"}
    (skip,) = parsed.skipped
    assert (skip.base_plan_id, skip.plan_id, skip.kind) == ("444", "1642", "bad_date")
    assert "2021-09-31" in skip.reason


@pytest.mark.parametrize(
    ("bad_plan", "kind"),
    [
        (base_plan(plan(zone(), end="2021-06-30T20:00:00")), "ends_before_start"),
        (base_plan(plan(zone(), plan_id="")), "missing_id"),
        (base_plan(plan(zone()), base_id=""), "missing_id"),
        (base_plan(plan(zone()), title=""), "missing_title"),
        (base_plan(plan(zone(price="twenty"))), "bad_zone"),
        (base_plan(plan(zone(price="nan"))), "bad_zone"),
        (base_plan(plan(zone(capacity="lots"))), "bad_zone"),
        (base_plan(plan(zone(), start="tomorrow")), "bad_date"),
    ],
)
def test_one_bad_plan_never_drops_the_rest_of_the_feed(bad_plan: str, kind: str) -> None:
    """Every kind of unreadable plan is skipped and counted while the good plan beside it is kept."""
    good = base_plan(plan(zone()), base_id="2")
    parsed = parse(plan_xml(bad_plan + good), MADRID)
    assert [e.base_plan_id for e in parsed.events] == ["2"]
    assert [s.kind for s in parsed.skipped] == [kind]


def test_end_equal_to_start_is_accepted() -> None:
    """An event that ends when it starts is odd but readable."""
    (event,) = parse(plan_xml(base_plan(plan(zone(), end="2021-06-30T21:00:00"))), MADRID).events
    assert event.start == event.end


def test_offline_plans_are_parsed_and_marked_offline() -> None:
    """The parser reports sell mode; deciding what to serve is the merge's job."""
    (event,) = parse(plan_xml(base_plan(plan(zone()), sell_mode="offline")), MADRID).events
    assert not event.online


def test_a_base_plan_with_several_plans_gives_one_event_per_plan() -> None:
    """Each plan of a base plan is its own event with its own id."""
    parsed = parse(plan_xml(base_plan(plan(zone(), plan_id="1") + plan(zone(), plan_id="2"))), MADRID)
    assert [e.plan_id for e in parsed.events] == ["1", "2"]
    assert len({e.id for e in parsed.events}) == 2


def test_titles_with_escaped_characters_are_unescaped() -> None:
    """XML character references in titles come out as text."""
    (event,) = parse(
        plan_xml(base_plan(plan(zone()), title="Tom &amp; Jerry &quot;live&quot;")), MADRID
    ).events
    assert event.title == 'Tom & Jerry "live"'


def test_feed_parsed_in_small_chunks_equals_feed_parsed_whole() -> None:
    """Streaming: the result does not depend on where the network splits the body."""
    document = read("response_1.xml")
    parser = FeedParser(MADRID)
    for offset in range(0, len(document), 7):
        parser.feed(document[offset : offset + 7])
    assert parser.close().events == parse(document, MADRID).events


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"<planList><output><base_plan base_plan_id='1'",  # truncated
        b"<html><body>502 Bad Gateway</body></html>",
        b"not xml at all",
        b"<planList><output></planList>",
        b'<?xml version="1.0" encoding="UVF-8"?><planList><output/></planList>',
    ],
    ids=["empty", "truncated", "html", "garbage", "mismatched", "unknown-encoding"],
)
def test_broken_documents_are_refused_whole(document: bytes) -> None:
    """A body that is not a whole feed raises FeedError: nothing from it may be stored."""
    with pytest.raises(FeedError):
        parse(document, MADRID)


def test_valid_empty_feed_has_no_events() -> None:
    """An empty output is a valid feed with nothing in it (and must not delete anything)."""
    parsed = parse(plan_xml(""), MADRID)
    assert parsed.events == [] and parsed.skipped == []


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<planList><output><base_plan base_plan_id="1" sell_mode="online" title="&lol2;"/></output></planList>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE planList [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<planList><output><base_plan base_plan_id="1" sell_mode="online" title="&xxe;"/></output></planList>"""


@pytest.mark.parametrize(
    "document",
    [BILLION_LAUGHS, XXE, b"<!DOCTYPE planList><planList/>"],
    ids=["billion-laughs", "xxe", "bare-doctype"],
)
def test_doctypes_and_entities_are_refused(document: bytes) -> None:
    """No DTD is accepted, so no entity is ever expanded or fetched."""
    with pytest.raises(FeedRefused, match="DOCTYPE"):
        parse(document, MADRID)


def test_deeply_nested_document_is_refused() -> None:
    """Nesting far beyond the feed's three levels is refused, not walked."""
    document = b"<planList>" + b"<a>" * 100 + b"</a>" * 100 + b"</planList>"
    with pytest.raises(FeedRefused, match="deeper"):
        parse(document, MADRID)


def test_feed_over_the_size_cap_is_refused() -> None:
    """The cap counts bytes as they stream in, whatever the headers said."""
    parser = FeedParser(MADRID, max_bytes=100)
    parser.feed(b"<planList><output>")
    with pytest.raises(FeedRefused, match="cap"):
        parser.feed(b" " * 100)


def test_times_with_an_offset_are_read_in_the_provider_zone() -> None:
    """Should the provider ever send an offset, the wall-clock time in its zone is what we keep."""
    (event,) = parse(
        plan_xml(base_plan(plan(zone(), start="2021-06-30T19:00:00Z", end="2021-06-30T20:00:00Z"))), MADRID
    ).events
    assert event.start == datetime(2021, 6, 30, 21)


def test_a_single_token_of_megabytes_is_refused_as_it_streams() -> None:
    """A 2 MB attribute is refused after its first mebibyte, before expat's rescans get costly."""
    parser = FeedParser(MADRID)
    parser.feed(b'<planList><output><base_plan base_plan_id="1" title="')
    accepted = 0

    def stream_two_megabytes() -> None:
        nonlocal accepted
        for _ in range(128):
            parser.feed(b"x" * 16384)
            accepted += 16384

    with pytest.raises(FeedRefused, match="single token"):
        stream_two_megabytes()
    assert accepted <= 1024 * 1024  # the chunk that went past the first mebibyte was the one refused


@pytest.mark.parametrize("chunk_size", [4 * 1024, 64 * 1024, 2 * 1024 * 1024], ids=["4KiB", "64KiB", "2MiB"])
def test_large_feeds_of_ordinary_elements_stream_through(chunk_size: int) -> None:
    """The token bound never trips on a real feed, whatever the chunk size."""
    from eventapi.sim.feeds import generate_feed

    document = generate_feed(300, 50, seed=3)
    parser = FeedParser(MADRID)
    for offset in range(0, len(document), chunk_size):
        parser.feed(document[offset : offset + chunk_size])
    assert len(parser.close().events) == len(parse(document, MADRID).events) > 300
