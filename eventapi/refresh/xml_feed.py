"""Streaming parser of the provider's XML feed (both the planList and the older eventList shape).

Pure: bytes in, events and skipped plans out. Built on the standard library's expat, chosen
over lxml by measurement (docs/decisions/001-expat-over-lxml.md).
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any
from xml.parsers import expat

from eventapi.errors import FeedError, FeedRefused
from eventapi.plans import BASE_ID_ATTRIBUTES, PLAN_ATTRIBUTES, SkippedPlan, read_plan
from eventapi.refresh.work import ParsedFeed

_ROOTS = frozenset({"planList", "eventList"})
# The feed is three levels deep; anything far deeper is hostile or broken, not a feed.
_MAX_DEPTH = 16
# No element of a feed is anywhere near this long. Expat before 2.6 rescans an unfinished token
# on every chunk (CVE-2023-52425): a token of many megabytes costs time quadratic in its size.
_MAX_BYTES_WITHOUT_AN_ELEMENT = 1024 * 1024


class FeedParser:
    """Incremental parser: `feed()` chunks as they arrive, then `close()` for the result."""

    def __init__(self, tz: tzinfo, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._tz = tz
        self._max_bytes = max_bytes
        self._result = ParsedFeed()
        self._depth = 0
        self._elements = 0  # start and end tags seen, to notice megabytes that hold none
        self._bytes_since_element = 0
        self._root_seen = False
        self._base: dict[str, str] | None = None
        self._base_id_attr = ""
        self._plan: dict[str, str] | None = None
        self._plan_names = PLAN_ATTRIBUTES["plan"]
        self._tzs: list[dict[str, str]] = []
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
        elements_before = self._elements
        self._parse(chunk, final=False)
        if self._elements != elements_before:
            self._bytes_since_element = 0
            return
        self._bytes_since_element += len(chunk)
        if self._bytes_since_element > _MAX_BYTES_WITHOUT_AN_ELEMENT:
            raise FeedRefused(f"feed holds a single token of more than {_MAX_BYTES_WITHOUT_AN_ELEMENT} bytes")

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
        self._elements += 1
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise FeedRefused(f"feed nests elements deeper than {_MAX_DEPTH} levels")
        if self._depth == 1:
            if name not in _ROOTS:
                raise FeedError(f"unexpected root element <{name[:40]}>: expected planList or eventList")
            self._root_seen = True
        elif name == "zone":
            if self._plan is not None:
                self._tzs.append(attrs)
        elif name in PLAN_ATTRIBUTES:
            if self._base is not None:
                self._plan, self._plan_names, self._tzs = attrs, PLAN_ATTRIBUTES[name], []
        elif name in BASE_ID_ATTRIBUTES:
            self._base, self._base_id_attr = attrs, BASE_ID_ATTRIBUTES[name]

    def _end(self, name: str) -> None:
        self._elements += 1
        self._depth -= 1
        if name in PLAN_ATTRIBUTES and self._plan is not None and self._base is not None:
            self._finish_plan(self._base, self._plan)
            self._plan = None
        elif name in BASE_ID_ATTRIBUTES:
            self._base = None

    def _finish_plan(self, base: dict[str, str], plan: dict[str, str]) -> None:
        read = read_plan(base, self._base_id_attr, plan, self._plan_names, self._tzs, self._tz)
        if isinstance(read, SkippedPlan):
            self._result.skipped.append(read)
        else:
            self._result.events.append(read)


def parse(document: bytes, tz: tzinfo, max_bytes: int = 64 * 1024 * 1024) -> ParsedFeed:
    """Parse a whole feed held in memory."""
    parser = FeedParser(tz, max_bytes)
    parser.feed(document)
    return parser.close()
