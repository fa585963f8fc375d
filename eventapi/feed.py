"""Streaming parser of the provider's XML feed (both the planList and the older eventList shape).

Pure: bytes in, events and skipped plans out. Built on the standard library's expat, which
`bench/test_bench_parse.py` measured against lxml's iterparse (see the README's Performance notes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from xml.parsers import expat

from .errors import FeedError, FeedRefused
from .events import Event, event_id, price_range

# Element and attribute names of the two feed shapes, current one first.
_ROOTS = frozenset({"planList", "eventList"})
_BASES = {"base_plan": "base_plan_id", "base_event": "base_event_id"}
_PLANS = {
    "plan": ("plan_id", "plan_start_date", "plan_end_date"),
    "event": ("event_id", "event_start_date", "event_end_date"),
}
# The feed is three levels deep; anything far deeper is hostile or broken, not a feed.
_MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class SkippedPlan:
    """A plan that could not be read, with the ids it had and why it was skipped."""

    base_plan_id: str
    plan_id: str
    kind: str  # stable, for counters: missing_id, missing_title, bad_date, ends_before_start, bad_zone
    reason: str  # for people: what was wrong, with the value


@dataclass(slots=True)
class ParsedFeed:
    """What one feed held: readable plans as events, in feed order, and the plans skipped."""

    events: list[Event] = field(default_factory=list)
    skipped: list[SkippedPlan] = field(default_factory=list)
    size: int = 0


class _PlanUnreadable(Exception):
    """One plan is unreadable; the parser records it and goes on with the rest of the feed."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class FeedParser:
    """Incremental parser: `feed()` chunks as they arrive, then `close()` for the result."""

    def __init__(self, zone: tzinfo, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._zone = zone
        self._max_bytes = max_bytes
        self._result = ParsedFeed()
        self._depth = 0
        self._root_seen = False
        self._base: dict[str, str] | None = None
        self._base_id_attr = ""
        self._plan: dict[str, str] | None = None
        self._plan_names: tuple[str, str, str] = _PLANS["plan"]
        self._zones: list[dict[str, str]] = []
        self._parser = self._new_expat()

    def _new_expat(self) -> Any:
        parser = expat.ParserCreate()
        parser.buffer_text = True
        # No DOCTYPE means no entity declarations: no billion laughs, no external entity fetch.
        parser.StartDoctypeDeclHandler = self._refuse_doctype
        parser.EntityDeclHandler = self._refuse_entity
        parser.ExternalEntityRefHandler = self._refuse_entity
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        return parser

    def feed(self, chunk: bytes) -> None:
        """Parse the next chunk of the document."""
        self._result.size += len(chunk)
        if self._result.size > self._max_bytes:
            raise FeedRefused(f"feed larger than the cap of {self._max_bytes} bytes")
        self._parse(chunk, final=False)

    def close(self) -> ParsedFeed:
        """Finish the document; a truncated or empty one raises FeedError."""
        self._parse(b"", final=True)
        if not self._root_seen:
            raise FeedError("feed has no planList or eventList root element")
        return self._result

    def _parse(self, data: bytes, *, final: bool) -> None:
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError as exc:
            raise FeedError(f"feed is not well-formed XML: {exc}") from None
        except LookupError as exc:  # an encoding declaration Python does not know
            raise FeedError(f"feed declares an unknown encoding: {exc}") from None

    # expat handlers ------------------------------------------------------------------------

    def _refuse_doctype(self, *_: object) -> None:
        raise FeedRefused("feed has a DOCTYPE; refused (no DTDs or entities are accepted)")

    def _refuse_entity(self, *_: object) -> int:
        raise FeedRefused("feed declares or references an entity; refused")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise FeedRefused(f"feed nests elements deeper than {_MAX_DEPTH} levels")
        if self._depth == 1:
            if name not in _ROOTS:
                raise FeedError(f"unexpected root element <{name[:40]}>: expected planList or eventList")
            self._root_seen = True
        elif name == "zone":
            if self._plan is not None:
                self._zones.append(attrs)
        elif name in _PLANS:
            if self._base is not None:
                self._plan, self._plan_names, self._zones = attrs, _PLANS[name], []
        elif name in _BASES:
            self._base, self._base_id_attr = attrs, _BASES[name]

    def _end(self, name: str) -> None:
        self._depth -= 1
        if name in _PLANS and self._plan is not None and self._base is not None:
            self._finish_plan(self._base, self._plan)
            self._plan = None
        elif name in _BASES:
            self._base = None

    def _finish_plan(self, base: dict[str, str], plan: dict[str, str]) -> None:
        id_attr, start_attr, end_attr = self._plan_names
        base_plan_id = base.get(self._base_id_attr, "")
        plan_id = plan.get(id_attr, "")
        try:
            self._result.events.append(
                self._read_plan(base, plan, base_plan_id, plan_id, start_attr, end_attr)
            )
        except _PlanUnreadable as exc:
            self._result.skipped.append(SkippedPlan(base_plan_id, plan_id, exc.kind, str(exc)))

    def _read_plan(
        self,
        base: dict[str, str],
        plan: dict[str, str],
        base_plan_id: str,
        plan_id: str,
        start_attr: str,
        end_attr: str,
    ) -> Event:
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

    def _read_time(self, plan: dict[str, str], attr: str) -> datetime:
        raw = plan.get(attr)
        if not raw:
            raise _PlanUnreadable("bad_date", f"missing {attr}")
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise _PlanUnreadable("bad_date", f"invalid {attr} {raw[:40]!r}") from None
        if moment.tzinfo is not None:
            # The provider sends wall-clock times; should one carry an offset, read it in our zone.
            moment = moment.astimezone(self._zone).replace(tzinfo=None)
        return moment.replace(microsecond=0)


def _read_zones(zones: Iterable[dict[str, str]]) -> list[tuple[int, float]]:
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
    parser = FeedParser(zone, max_bytes)
    parser.feed(document)
    return parser.close()
