"""Feed bodies for the provider simulator: the bundled samples, seeded large feeds and faulty bodies."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from importlib import resources
from xml.sax.saxutils import escape

SAMPLE_FILES = ("response_1.xml", "response_2.xml", "response_3_planlist.xml")

_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<planList xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="1.0"'
    ' xsi:noNamespaceSchemaLocation="planList.xsd">\n'
)
_TAIL = "</planList>\n"
# Words that need escaping are in the list on purpose: clients must read titles, not raw XML.
_TITLE_WORDS = (
    "Concierto",
    "Gala",
    "Rock & Roll",
    "Tributo",
    "Ñandú",
    "Noche",
    "Flamenco",
    '"Clásicos"',
    "Jazz",
    "Ópera",
    "<Live>",
    "Teatro",
    "Humor",
    "Sinfonía",
    "Fiesta",
    "O'Brien",
)
_ZONE_NAMES = ("Platea", "Grada 1", "Grada 2", "Amfiteatre", "Palco", "A28", "A42", "Pista")
_QUOTED = {'"': "&quot;"}

EMPTY_FEED = (_HEAD + "   <output/>\n" + _TAIL).encode()
# Unclosed elements and a stray '<' in an attribute value: no XML parser accepts this.
MALFORMED_FEED = (
    _HEAD + '   <output>\n      <base_plan base_plan_id="1" title="a < b">\n'
    '         <plan plan_id="1" <<garbage>> \x01\n'
).encode()
HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is temporarily unavailable.</p></body></html>\n"
)


SAMPLE_NAMES = ("response_1.xml", "response_2.xml", "response_3.xml", "response_3_planlist.xml")


def sample_feed(name: str) -> bytes:
    """One of the provider's sample answers bundled with the package, by file name (SAMPLE_NAMES)."""
    if name not in SAMPLE_NAMES:
        raise ValueError(f"no sample named {name!r}: one of {', '.join(SAMPLE_NAMES)}")
    return resources.files(__package__ or "eventapi.sim").joinpath("samples", name).read_bytes()


def load_sample_feeds() -> list[bytes]:
    """The sample answers the simulator serves in turn: oldest shape first, the planList shape last."""
    return [sample_feed(name) for name in SAMPLE_FILES]


def generate_feed(
    plans: int, zones: int, seed: int = 0, first_day: date = date(2027, 1, 1), days: int = 365
) -> bytes:
    """Build a deterministic planList feed of `plans` base plans with `zones` zones per plan."""
    rng = random.Random(seed)
    midnight = datetime.combine(first_day, datetime.min.time())
    parts = [_HEAD, "   <output>\n"]
    for index in range(plans):
        title = " ".join(rng.sample(_TITLE_WORDS, 2))
        organizer = f' organizer_company_id="{rng.randint(1, 9)}"' if rng.random() < 0.5 else ""
        sell_mode = "online" if rng.random() < 0.8 else "offline"
        parts.append(
            f'      <base_plan base_plan_id="{1000 + index}" sell_mode="{sell_mode}"{organizer}'
            f' title="{escape(title, _QUOTED)}">\n'
        )
        # Plan ids come from a small range so they repeat across base plans, as in the samples.
        first_plan_id = rng.randint(1, 3000)
        for plan_id in range(first_plan_id, first_plan_id + (2 if rng.random() < 0.1 else 1)):
            _append_plan(parts, rng, plan_id, zones, midnight, days)
        parts.append("      </base_plan>\n")
    parts.append("   </output>\n")
    parts.append(_TAIL)
    return "".join(parts).encode()


def _append_plan(
    parts: list[str], rng: random.Random, plan_id: int, zones: int, midnight: datetime, days: int
) -> None:
    # Starts from 09:00 to 23:59, so late long plans end after midnight.
    start = midnight + timedelta(days=rng.randrange(days), minutes=rng.randrange(9 * 60, 24 * 60))
    end = start + timedelta(minutes=rng.randint(30, 240))
    sell_from = datetime.combine(start.date() - timedelta(days=rng.randint(30, 180)), datetime.min.time())
    sell_to = start - timedelta(minutes=10)
    sold_out = "true" if rng.random() < 0.05 else "false"
    parts.append(
        f'         <plan plan_start_date="{start.isoformat()}" plan_end_date="{end.isoformat()}"'
        f' plan_id="{plan_id}" sell_from="{sell_from.isoformat()}" sell_to="{sell_to.isoformat()}"'
        f' sold_out="{sold_out}">\n'
    )
    # One random() per zone, split into independent digits, keeps 1M zones within seconds.
    rand = rng.random
    for _ in range(zones):
        roll = int(rand() * 1_000_000_000)
        capacity = 0 if roll % 10 == 0 else (roll // 10) % 500 + 1
        parts.append(
            f'            <zone zone_id="{(roll // 5_000) % 400 + 1}" capacity="{capacity}"'
            f' price="{(roll // 2_000_000) % 146 + 5}.{"50" if (roll // 5_000_000) % 4 == 0 else "00"}"'
            f' name="{_ZONE_NAMES[(roll // 20_000_000) % len(_ZONE_NAMES)]}"'
            f' numbered="{"true" if (roll // 200_000_000) % 2 else "false"}" />\n'
        )
    parts.append("         </plan>\n")


def oversize_feed_chunks(size: int, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """Yield a well-formed planList of exactly `size` bytes (or the smallest one, if larger) in chunks."""
    head = (_HEAD + "   <output>\n").encode()
    tail = ("   </output>\n" + _TAIL).encode()
    yield head
    remaining = size - len(head) - len(tail)
    record_count = 0
    while remaining > 0:
        chunk = []
        chunk_bytes = 0
        while chunk_bytes < chunk_size:
            record = _oversize_record(record_count)
            if len(record) > remaining - chunk_bytes:
                break
            chunk.append(record)
            chunk_bytes += len(record)
            record_count += 1
        if not chunk:
            # Less than one record left: whitespace between elements pads to the exact size.
            yield b" " * remaining
            break
        yield b"".join(chunk)
        remaining -= chunk_bytes
    yield tail


def _oversize_record(number: int) -> bytes:
    # Fixed-width ids keep every record the same length; distinct ids make each one a new event.
    return (
        f'      <base_plan base_plan_id="{number:012d}" sell_mode="online" title="Filler">'
        f'<plan plan_start_date="2027-06-01T20:00:00" plan_end_date="2027-06-01T21:00:00" plan_id="1"'
        f' sell_from="2027-01-01T00:00:00" sell_to="2027-06-01T19:50:00" sold_out="false">'
        f'<zone zone_id="1" capacity="10" price="20.00" name="Platea" numbered="true" />'
        f"</plan></base_plan>\n"
    ).encode()
