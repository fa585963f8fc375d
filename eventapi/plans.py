"""From one plan's attributes to an Event, or to the reason it was skipped: the feed's mapping rules.

Pure and independent of the XML library, so every parser applies exactly the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo

from eventapi.events import Event, event_id, price_range


@dataclass(frozen=True, slots=True)
class PlanAttributes:
    """Attribute names of a plan element in one feed shape."""

    id: str
    start: str
    end: str


# The two feed shapes, current one first: base element -> its id attribute, plan element -> its names.
BASE_ID_ATTRIBUTES = {"base_plan": "base_plan_id", "base_event": "base_event_id"}
PLAN_ATTRIBUTES = {
    "plan": PlanAttributes("plan_id", "plan_start_date", "plan_end_date"),
    "event": PlanAttributes("event_id", "event_start_date", "event_end_date"),
}


# Why a plan is skipped, stable for counters (eventapi_plans_skipped_total exports each, 0 included).
SKIP_KINDS = ("missing_id", "missing_title", "bad_date", "ends_before_start", "bad_zone")


@dataclass(frozen=True, slots=True)
class SkippedPlan:
    """A plan that could not be read, with the ids it had and why it was skipped."""

    base_plan_id: str
    plan_id: str
    kind: str  # one of SKIP_KINDS
    reason: str  # for people: what was wrong, with the value


class _Unreadable(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def read_plan(
    base: Mapping[str, str],
    base_id_attribute: str,
    plan: Mapping[str, str],
    names: PlanAttributes,
    zones: Iterable[Mapping[str, str]],
    tz: tzinfo,
) -> Event | SkippedPlan:
    """The event a plan describes, or why it cannot be read (the rest of the feed goes on)."""
    base_plan_id, plan_id = base.get(base_id_attribute, ""), plan.get(names.id, "")
    try:
        return _event(base, plan, zones, names, tz, base_plan_id, plan_id)
    except _Unreadable as exc:
        return SkippedPlan(base_plan_id, plan_id, exc.kind, str(exc))


def _event(
    base: Mapping[str, str],
    plan: Mapping[str, str],
    zones: Iterable[Mapping[str, str]],
    names: PlanAttributes,
    tz: tzinfo,
    base_plan_id: str,
    plan_id: str,
) -> Event:
    if not base_plan_id or not plan_id:
        raise _Unreadable("missing_id", "missing base plan id or plan id")
    title = base.get("title")
    if not title:
        raise _Unreadable("missing_title", "missing title")
    start, end = _moment(plan, names.start, tz), _moment(plan, names.end, tz)
    if end < start:
        raise _Unreadable(
            "ends_before_start", f"ends ({end.isoformat()}) before it starts ({start.isoformat()})"
        )
    min_price, max_price = price_range(_price_zones(zones), plan.get("sold_out") == "true")
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


def _moment(plan: Mapping[str, str], attr: str, tz: tzinfo) -> datetime:
    raw = plan.get(attr)
    if not raw:
        raise _Unreadable("bad_date", f"missing {attr}")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _Unreadable("bad_date", f"invalid {attr} {raw[:40]!r}") from None
    if moment.tzinfo is not None:
        # The provider sends wall-clock times; should one carry an offset, read it in its zone.
        moment = moment.astimezone(tz).replace(tzinfo=None)
    return moment.replace(microsecond=0)


def _price_zones(zones: Iterable[Mapping[str, str]]) -> list[tuple[int, float]]:
    read = []
    for zone in zones:
        zone_id = zone.get("zone_id", "?")
        try:
            capacity = int(zone.get("capacity", ""))
        except ValueError:
            raise _Unreadable("bad_zone", f"zone {zone_id}: capacity is not a whole number") from None
        try:
            price = float(zone.get("price", ""))
        except ValueError:
            price = math.nan
        if not math.isfinite(price) or price < 0:
            raise _Unreadable("bad_zone", f"zone {zone_id}: price {zone.get('price')!r} is not a number")
        read.append((capacity, price))
    return read
