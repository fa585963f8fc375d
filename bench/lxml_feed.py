"""The feed parser again on lxml's streaming pull parser: a reference to measure `eventapi.feed` against.

Same rules as `eventapi.feed` (its expat handlers, event for event), written again rather than imported
so that the equality checks check one implementation against the other. What libxml2 accepts and expat
does not, or the other way round, is pinned in `test_parsers_agree.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import Any

from lxml import etree

from eventapi.errors import FeedError, FeedRefused
from eventapi.events import Event, event_id, price_range
from eventapi.feed import ParsedFeed, SkippedPlan

_ROOTS = frozenset({"planList", "eventList"})
_BASES = {"base_plan": "base_plan_id", "base_event": "base_event_id"}
_PLANS = {
    "plan": ("plan_id", "plan_start_date", "plan_end_date"),
    "event": ("event_id", "event_start_date", "event_end_date"),
}
# Cleared at their end, with children of the root; never a zone, whose attributes are read at its plan's end.
_CLEARED = frozenset(_PLANS) | frozenset(_BASES)
_KNOWN = _CLEARED | _ROOTS | {"zone"}
_MAX_DEPTH = 16
# Slices handed to libxml2: its events are drained (and the elements cleared) after each one.
_SLICE = 16 * 1024


class _PlanUnreadable(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class LxmlFeedParser:
    """Incremental parser with the interface of `eventapi.feed.FeedParser`, on `lxml.etree.XMLPullParser`."""

    def __init__(self, zone: tzinfo, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._zone = zone
        self._max_bytes = max_bytes
        self._result = ParsedFeed()
        self._depth = 0
        self._root_seen = False
        self._base: Any = None
        self._base_id_attr = ""
        self._plan: Any = None
        self._plan_names: tuple[str, str, str] = _PLANS["plan"]
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
        base_plan_id = base.get(self._base_id_attr, "")
        plan_id = plan.get(self._plan_names[0], "")
        try:
            self._result.events.append(self._read_plan(base, plan, base_plan_id, plan_id))
        except _PlanUnreadable as exc:
            self._result.skipped.append(SkippedPlan(base_plan_id, plan_id, exc.kind, str(exc)))

    def _read_plan(self, base: Any, plan: Any, base_plan_id: str, plan_id: str) -> Event:
        _, start_attr, end_attr = self._plan_names
        if not base_plan_id or not plan_id:
            raise _PlanUnreadable("missing_id", "missing base plan id or plan id")
        title = base.get("title")
        if not title:
            raise _PlanUnreadable("missing_title", "missing title")
        start = self._read_time(plan, start_attr)
        end = self._read_time(plan, end_attr)
        if end < start:
            raise _PlanUnreadable(
                "ends_before_start", f"ends ({end.isoformat()}) before it starts ({start.isoformat()})"
            )
        min_price, max_price = price_range(_read_zones(self._zones), plan.get("sold_out") == "true")
        return Event(
            id=event_id(base_plan_id, plan_id),
            base_plan_id=base_plan_id,
            plan_id=plan_id,
            title=title,
            start=start,
            end=end,
            min_price=min_price,
            max_price=max_price,
            online=base.get("sell_mode") == "online",
        )

    def _read_time(self, plan: Any, attr: str) -> datetime:
        raw = plan.get(attr)
        if not raw:
            raise _PlanUnreadable("bad_date", f"missing {attr}")
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise _PlanUnreadable("bad_date", f"invalid {attr} {raw[:40]!r}") from None
        if moment.tzinfo is not None:
            moment = moment.astimezone(self._zone).replace(tzinfo=None)
        return moment.replace(microsecond=0)


def _qualified_name(elem: Any) -> str:
    # expat runs without namespace processing and reports names as written: prefix:local, or local.
    local = etree.QName(elem).localname
    return f"{elem.prefix}:{local}" if elem.prefix else local


def _read_zones(zones: Iterable[Any]) -> list[tuple[int, float]]:
    read = []
    for zone in zones:
        try:
            capacity = int(zone.get("capacity", ""))
        except ValueError:
            raise _PlanUnreadable(
                "bad_zone", f"zone {zone.get('zone_id', '?')}: capacity is not a whole number"
            ) from None
        try:
            price = float(zone.get("price", ""))
        except ValueError:
            price = math.nan
        if not math.isfinite(price) or price < 0:
            raise _PlanUnreadable(
                "bad_zone", f"zone {zone.get('zone_id', '?')}: price {zone.get('price')!r} is not a number"
            )
        read.append((capacity, price))
    return read


def parse(document: bytes, zone: tzinfo, max_bytes: int = 64 * 1024 * 1024) -> ParsedFeed:
    """Parse a whole feed held in memory."""
    parser = LxmlFeedParser(zone, max_bytes)
    parser.feed(document)
    return parser.close()
