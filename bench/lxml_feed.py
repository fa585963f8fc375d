"""The feed parser again on lxml's streaming pull parser: a reference to measure `xml_feed` against.

The XML walk of `eventapi.refresh.xml_feed` (its expat handlers, event for event) written again, with
the mapping rules of `eventapi.plans` shared, so that the equality checks check one walk against the
other. What libxml2 accepts and expat does not, or the other way round, is pinned in
`test_parsers_agree.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import tzinfo
from typing import Any

from lxml import etree

from eventapi.errors import FeedError, FeedRefused
from eventapi.plans import BASE_ID_ATTRIBUTES, PLAN_ATTRIBUTES, SkippedPlan, read_plan
from eventapi.refresh.work import ParsedFeed

_ROOTS = frozenset({"planList", "eventList"})
_BASES = BASE_ID_ATTRIBUTES
_PLANS = PLAN_ATTRIBUTES
# Cleared at their end, with children of the root; never a zone, whose attributes are read at its plan's end.
_CLEARED = frozenset(_PLANS) | frozenset(_BASES)
_KNOWN = _CLEARED | _ROOTS | {"zone"}
_MAX_DEPTH = 16
# Slices handed to libxml2: its events are drained (and the elements cleared) after each one.
_SLICE = 16 * 1024


class LxmlFeedParser:
    """Incremental parser with the interface of `xml_feed.FeedParser`, on `lxml.etree.XMLPullParser`."""

    def __init__(self, zone: tzinfo, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._zone = zone
        self._max_bytes = max_bytes
        self._result = ParsedFeed()
        self._depth = 0
        self._root_seen = False
        self._base: Any = None
        self._base_id_attr = ""
        self._plan: Any = None
        self._plan_names = _PLANS["plan"]
        self._zones: list[Any] = []
        # No DTD is loaded and no entity resolved or fetched; a DOCTYPE is refused at the root below.
        self._parser = etree.XMLPullParser(
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )

    def feed(self, chunk: bytes) -> None:
        """Parse the next chunk of the document."""
        self._result.size += len(chunk)
        if self._result.size > self._max_bytes:
            raise FeedRefused(f"feed larger than the cap of {self._max_bytes} bytes")
        for offset in range(0, len(chunk), _SLICE):
            self._run(self._parser.feed, chunk[offset : offset + _SLICE])

    def close(self) -> ParsedFeed:
        """Finish the document; a truncated or empty one raises FeedError."""
        self._run(self._parser.close)
        if not self._root_seen:
            raise FeedError("feed has no planList or eventList root element")
        return self._result

    def _run(self, step: Callable[..., object], *args: bytes) -> None:
        try:
            step(*args)
        except etree.XMLSyntaxError as exc:
            # Events before the error come first, as expat's handlers would have run on them.
            self._handle(self._parser.read_events())
            raise FeedError(f"feed is not well-formed XML: {exc}") from None
        self._handle(self._parser.read_events())

    def _handle(self, events: Iterable[tuple[str, Any]]) -> None:
        for action, elem in events:
            name = elem.tag
            if name == "zone":
                # Nearly every element is a zone: the general path below, shortened for the usual depths.
                if action == "start":
                    if 0 < self._depth < _MAX_DEPTH:
                        self._depth += 1
                        if self._plan is not None:
                            self._zones.append(elem)
                        continue
                elif self._depth != 2:
                    self._depth -= 1
                    continue
            elif name not in _KNOWN and name[:1] == "{":
                name = _qualified_name(elem)
            if action == "start":
                self._start(name, elem)
            else:
                self._end(name, elem)

    def _start(self, name: str, elem: Any) -> None:
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise FeedRefused(f"feed nests elements deeper than {_MAX_DEPTH} levels")
        if self._depth == 1:
            if elem.getroottree().docinfo.internalDTD is not None:
                raise FeedRefused("feed has a DOCTYPE; refused (no DTDs or entities are accepted)")
            if name not in _ROOTS:
                raise FeedError(f"unexpected root element <{name[:40]}>: expected planList or eventList")
            self._root_seen = True
        elif name == "zone":
            if self._plan is not None:
                self._zones.append(elem)
        elif name in _PLANS:
            if self._base is not None:
                self._plan, self._plan_names, self._zones = elem, _PLANS[name], []
        elif name in _BASES:
            self._base, self._base_id_attr = elem, _BASES[name]

    def _end(self, name: str, elem: Any) -> None:
        self._depth -= 1
        if name in _PLANS and self._plan is not None and self._base is not None:
            self._finish_plan(self._base, self._plan)
            self._plan = None
        elif name in _BASES:
            self._base = None
        if name in _CLEARED or self._depth == 1:
            # Bounded memory: drop what was read, and the emptied siblings before it.
            elem.clear(keep_tail=True)
            parent = elem.getparent()
            while elem.getprevious() is not None:
                del parent[0]

    def _finish_plan(self, base: Any, plan: Any) -> None:
        # The mapping rules are the package's own: only the XML layer differs between the parsers.
        zones = [zone.attrib for zone in self._zones]
        read = read_plan(base.attrib, self._base_id_attr, plan.attrib, self._plan_names, zones, self._zone)
        if isinstance(read, SkippedPlan):
            self._result.skipped.append(read)
        else:
            self._result.events.append(read)


def _qualified_name(elem: Any) -> str:
    # expat runs without namespace processing and reports names as written: prefix:local, or local.
    local = etree.QName(elem).localname
    return f"{elem.prefix}:{local}" if elem.prefix else local


def parse(document: bytes, zone: tzinfo, max_bytes: int = 64 * 1024 * 1024) -> ParsedFeed:
    """Parse a whole feed held in memory."""
    parser = LxmlFeedParser(zone, max_bytes)
    parser.feed(document)
    return parser.close()
