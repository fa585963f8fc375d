"""The store layouts this version reads and writes (docs/decisions/011-store-layout-versions.md).

Layout 1: the keys before a layout was recorded (no `layout` key, no `epoch`). Layout 2 adds both.
"""

from __future__ import annotations

from eventapi.errors import LayoutRefused

UNRECORDED = 1  # a store without a layout key holds layout 1 (or nothing at all)
WRITES = 2
READS = (1, 2)


def layout_of(raw: bytes | str | None) -> int:
    """The layout a stored value names; LayoutRefused when this version cannot read it."""
    if raw is None:
        return UNRECORDED
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    if text.isdigit() and int(text) in READS:
        return int(text)
    readable = " and ".join(str(layout) for layout in READS)
    raise LayoutRefused(
        f"the store holds layout {text!r}; this version reads layouts {readable} and writes {WRITES}: "
        "it neither serves nor writes that store (deploy a version that reads it, or use another prefix)"
    )
