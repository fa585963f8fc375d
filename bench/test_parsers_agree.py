"""The lxml reference parser against expat on awkward documents: same answer, or a known difference."""

from __future__ import annotations

import zoneinfo

import lxml_feed
import pytest
from compare import first_difference, outcome

from eventapi.refresh import xml_feed as feed

MADRID = zoneinfo.ZoneInfo("Europe/Madrid")
PLAN = '<plan plan_id="2" plan_start_date="2021-01-01T10:00:00" plan_end_date="2021-01-01T11:00:00">'


def base(inner: str, title: str = "T") -> str:
    return f'<base_plan base_plan_id="1" title="{title}" sell_mode="online">{inner}</base_plan>'


def document(inner: str, root: str = "planList", prolog: str = "") -> bytes:
    return f"{prolog}<{root}><output>{inner}</output></{root}>".encode()


def zone(capacity: str = "1", price: str = "3") -> str:
    return f'<zone zone_id="9" capacity="{capacity}" price="{price}"/>'


AGREED = {
    "zones-in-a-wrapper": document(base(PLAN + f"<zones>{zone()}<x>{zone('2', '1')}</x></zones></plan>")),
    "plan-inside-a-plan": document(base(PLAN + zone() + PLAN + zone(price="7") + "</plan></plan>")),
    "base-plan-inside-a-plan": document(base(PLAN + base("") + zone() + "</plan>")),
    "zones-outside-plans": document(zone() + base(zone() + PLAN + "</plan>" + zone(price="x"))),
    "plan-without-base-plan": document(PLAN + zone() + "</plan>"),
    "event-inside-base-plan": document(
        base('<event event_id="3" event_start_date="2021-01-01T10:00:00" event_end_date="2021-01-01T11:00"/>')
    ),
    "bad-plans": document(
        base(PLAN + zone(price="nan") + "</plan>")
        + base(PLAN + zone(capacity="") + "</plan>")
        + base(PLAN.replace("10:00", "12:00") + "</plan>")
        + base(PLAN + "</plan>", title="")
        + base(PLAN.replace('plan_id="2"', "") + "</plan>")
    ),
    "default-namespace": document(base(PLAN + zone() + "</plan>")).replace(
        b"<planList>", b'<planList xmlns="u">'
    ),
    "prefixed-plan": document(base(PLAN.replace("<plan", "<p:plan") + "</p:plan>"), prolog="").replace(
        b"<planList>", b'<planList xmlns:p="u">'
    ),
    "prefixed-root": b'<p:planList xmlns:p="u"/>',
    "escapes-offsets-and-fractions": document(
        base(PLAN.replace("10:00:00", "10:00:00.5+02:00") + "</plan>", title="&lt;&amp;&#x1F600;&#10;\t")
    ),
    "comments-and-pis": document("<!-- c --><?pi x?>" + base(PLAN + "<!-- c --></plan>")),
    "latin-1": document(
        base(PLAN + "</plan>", title="Ñandú"), prolog='<?xml version="1.0" encoding="ISO-8859-1"?>'
    )
    .decode()
    .encode("latin-1"),
    "utf-16": document(base(PLAN + "</plan>", title="Ñ"), prolog='<?xml version="1.0" encoding="UTF-16"?>')
    .decode()
    .encode("utf-16"),
    "depth-16": b"<planList>" + b"<a>" * 15 + b"</a>" * 15 + b"</planList>",
    "depth-17": b"<planList>" + b"<a>" * 16 + b"</a>" * 16 + b"</planList>",
    "zone-at-depth-17": b"<planList>" + b"<a>" * 15 + b"<zone/>" + b"</a>" * 15 + b"</planList>",
    "doctype": b"<!DOCTYPE planList><planList/>",
    "doctype-then-mismatched-tags": b"<!DOCTYPE planList><planList><a></b></planList>",
    "internal-subset": b'<!DOCTYPE p [<!ENTITY e "x">]><planList title="&e;"/>',
    "undefined-entity": b'<planList title="&e;"/>',
    "zone-as-root": b"<zone/>",
    "two-roots": b"<planList/><planList/>",
    "truncated": document(base(PLAN))[:-30],
    "empty": b"",
    "unknown-encoding": b'<?xml version="1.0" encoding="UVF-8"?><planList/>',
}
# Where lxml (libxml2) and expat (as eventapi.refresh.xml_feed drives it) disagree; both answers are given.
DIFFERENT = {
    "undeclared-attribute-prefix": (
        b'<planList xsi:noNamespaceSchemaLocation="planList.xsd"/>',
        "expat, without namespace processing, accepts the feed; libxml2 refuses an undeclared prefix",
    ),
    "undeclared-element-prefix": (
        document(base(PLAN + "<x:zone/></plan>")),
        "expat accepts the feed; libxml2 refuses an undeclared prefix",
    ),
    "title-over-10-mb": (
        document(base(PLAN + "</plan>", title="x" * 10_000_001)),
        "huge_tree=False caps an attribute value or text node at 10,000,000 bytes; expat has no such cap",
    ),
    "doctype-without-root": (
        b"<!DOCTYPE planList>",
        "expat raises FeedRefused at the DOCTYPE; lxml raises FeedError as no root element ever starts",
    ),
}


@pytest.mark.parametrize("name", list(AGREED))
def test_parsers_agree_on_awkward_documents(name: str) -> None:
    """Nesting, namespaces, encodings, limits and broken documents give lxml expat's answer."""
    expected = outcome(feed.parse, AGREED[name], MADRID)
    difference = first_difference(expected, outcome(lxml_feed.parse, AGREED[name], MADRID))
    assert difference is None, difference


@pytest.mark.parametrize("name", DIFFERENT)
def test_known_differences_stay_as_documented(name: str) -> None:
    """lxml refuses the feed, while expat reads it (or refuses it under another code)."""
    document_bytes, why = DIFFERENT[name]
    expected = outcome(feed.parse, document_bytes, MADRID)
    actual = outcome(lxml_feed.parse, document_bytes, MADRID)
    assert actual == "FeedError", why
    assert expected != actual, why


def test_small_chunks_give_the_same_answer_as_one_chunk(sample_documents: dict[str, bytes]) -> None:
    """Streaming: lxml's answer does not depend on where the network splits the body."""
    document_bytes = sample_documents["response_2.xml"]
    parser = lxml_feed.LxmlFeedParser(MADRID)
    for offset in range(0, len(document_bytes), 7):
        parser.feed(document_bytes[offset : offset + 7])
    assert first_difference(feed.parse(document_bytes, MADRID), parser.close()) is None
