"""Run two parsers on one document and name the first plan, and the fields, where their answers differ."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import tzinfo

from eventapi.refresh.work import ParsedFeed

Parse = Callable[[bytes, tzinfo, int], ParsedFeed]
# Generated feeds run past the service's 64 MiB cap; the comparisons are about parsing, not the cap.
NO_CAP = 1 << 40


def outcome(parse: Parse, document: bytes, zone: tzinfo) -> ParsedFeed | str:
    """The parsed feed, or the name of the exception the parser raised on the document."""
    try:
        return parse(document, zone, NO_CAP)
    except Exception as exc:  # any exception is an answer here, to compare with the other parser's
        return type(exc).__name__


def first_difference(expected: ParsedFeed | str, actual: ParsedFeed | str) -> str | None:
    """None when both answers are equal, else where they first differ, for a precise bug report."""
    if isinstance(expected, str) or isinstance(actual, str):
        return None if expected == actual else f"{_brief(expected)} against {_brief(actual)}"
    for kind in ("events", "skipped"):
        left, right = getattr(expected, kind), getattr(actual, kind)
        for index, (one, other) in enumerate(zip(left, right, strict=False)):
            if one != other:
                fields = [
                    f.name for f in dataclasses.fields(one) if getattr(one, f.name) != getattr(other, f.name)
                ]
                return (
                    f"{kind}[{index}], base plan {one.base_plan_id!r} plan {one.plan_id!r}: "
                    f"{', '.join(fields)} differ: {one!r} against {other!r}"
                )
        if len(left) != len(right):
            return f"{len(left)} {kind} against {len(right)}"
    if expected.size != actual.size:
        return f"size {expected.size} against {actual.size}"
    return None


def _brief(answer: ParsedFeed | str) -> str:
    if isinstance(answer, str):
        return f"raised {answer}"
    return f"{len(answer.events)} events and {len(answer.skipped)} skipped plans"
