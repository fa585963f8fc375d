"""The provider simulator, seen the way eventapi sees it: through a real aiohttp client over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import signal
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from eventapi.sim import Fault, SimServer, generate_feed, load_sample_feeds, main
from eventapi.sim.feeds import oversize_feed_chunks
from tests.support.waiting import wait_for

SAMPLES = Path(__file__).resolve().parents[1] / "eventapi" / "sim" / "samples"
SAMPLE_NAMES = ("response_1.xml", "response_2.xml", "response_3_planlist.xml")
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class Fetched:
    """One HTTP answer as the client received it."""

    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes


async def fetch(url: str) -> Fetched:
    # A fresh session per request, so no test depends on connection reuse.
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session, session.get(url) as response:
        body = await response.read()
        return Fetched(response.status, response.content_type, dict(response.headers), body)


async def control(method: str, url: str, body: object = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session,
        session.request(method, url, json=body) as response,
    ):
        decoded = await response.json() if response.content_type == "application/json" else None
        return response.status, decoded


def is_well_formed(document: bytes) -> bool:
    try:
        ET.fromstring(document)
    except ET.ParseError:
        return False
    return True


async def test_feeds_are_served_in_order_and_wrap(sim: SimServer) -> None:
    """The three samples come in turn, one per request, and the fourth request starts over."""
    expected = [(SAMPLES / name).read_bytes() for name in SAMPLE_NAMES]
    served = [await fetch(sim.url) for _ in range(4)]
    assert [answer.body for answer in served] == [*expected, expected[0]]
    assert {answer.content_type for answer in served} == {"application/xml"}
    assert sim.stats() == {"requests": 4, "served": 4, "fault": None}


def test_load_sample_feeds_reads_the_packaged_samples_in_order() -> None:
    """The default sequence is the two old-shape samples followed by the planList one."""
    assert load_sample_feeds() == [(SAMPLES / name).read_bytes() for name in SAMPLE_NAMES]


async def test_latency_fault_delays_then_serves_the_next_feed(sim: SimServer) -> None:
    """A slow provider still answers with the feed, and that feed counts as served."""
    sim.set_fault(Fault("latency", count=1, seconds=0.3))
    started = time.monotonic()
    answer = await fetch(sim.url)
    assert time.monotonic() - started >= 0.25  # the event loop may wake a timer a hair early
    assert answer.body == load_sample_feeds()[0]
    assert (await fetch(sim.url)).body == load_sample_feeds()[1]


async def test_status_fault_answers_that_status_with_a_text_body(sim: SimServer) -> None:
    """An erroring provider answers the configured status and a short plain-text body."""
    sim.set_fault(Fault("status", status=500))
    answer = await fetch(sim.url)
    assert (answer.status, answer.content_type) == (500, "text/plain")
    assert 0 < len(answer.body) < 200


async def test_big_feed_arrives_whole_with_its_length_even_after_latency() -> None:
    """Feeds over a megabyte go out in pieces as the client reads: same bytes, same Content-Length."""
    big = generate_feed(300, 80, seed=3)
    assert len(big) > 2 * 1024 * 1024
    with SimServer([big]) as server:
        plain = await fetch(server.url)
        server.set_fault(Fault("latency", seconds=0.01, count=1))
        delayed = await fetch(server.url)
    for answer in (plain, delayed):
        assert answer.status == 200 and answer.body == big
        assert int(answer.headers["Content-Length"]) == len(big)
        assert answer.headers["Content-Type"].startswith("application/xml")


async def test_truncate_fault_sends_half_the_feed_with_a_matching_length(sim: SimServer) -> None:
    """The HTTP response is complete and well-formed while the XML inside it is cut off."""
    sim.set_fault(Fault("truncate", count=1))
    answer = await fetch(sim.url)
    first = load_sample_feeds()[0]
    assert answer.status == 200
    assert answer.body == first[: len(first) // 2]
    assert int(answer.headers["Content-Length"]) == len(answer.body)
    assert not is_well_formed(answer.body)


async def test_malformed_fault_sends_xml_that_no_parser_accepts(sim: SimServer) -> None:
    """A garbage body arrives as 200 application/xml, so only parsing can catch it."""
    sim.set_fault(Fault("malformed"))
    answer = await fetch(sim.url)
    assert (answer.status, answer.content_type) == (200, "application/xml")
    assert answer.body.startswith(b"<?xml")
    assert not is_well_formed(answer.body)


async def test_html_fault_sends_an_html_error_page_with_status_200(sim: SimServer) -> None:
    """A proxy's error page arrives as a 200 text/html answer."""
    sim.set_fault(Fault("html"))
    answer = await fetch(sim.url)
    assert (answer.status, answer.content_type) == (200, "text/html")
    assert b"<html>" in answer.body


async def test_drop_fault_reaches_the_client_as_a_server_disconnect(sim: SimServer) -> None:
    """The connection closes without a response, which aiohttp reports as ServerDisconnectedError."""
    sim.set_fault(Fault("drop"))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await fetch(sim.url)
    assert sim.stats()["served"] == 0


async def test_oversize_fault_streams_a_well_formed_feed_of_the_requested_size(sim: SimServer) -> None:
    """A huge feed is streamed chunked, with no Content-Length to refuse it by in advance."""
    sim.set_fault(Fault("oversize", size=300_000))
    answer = await fetch(sim.url)
    assert (answer.status, answer.content_type) == (200, "application/xml")
    assert "Content-Length" not in answer.headers
    assert len(answer.body) == 300_000
    assert len(ET.fromstring(answer.body).findall("output/base_plan")) > 100


@pytest.mark.parametrize("size", [0, 250, 1_000, 65_537, 1_000_003])
def test_oversize_chunks_add_up_to_exactly_the_size_asked_for(size: int) -> None:
    """The streamed body is exactly `size` bytes, or the smallest valid feed when that is larger."""
    document = b"".join(oversize_feed_chunks(size))
    assert len(document) == max(size, len(b"".join(oversize_feed_chunks(0))))
    assert ET.fromstring(document).tag == "planList"


async def test_empty_fault_sends_a_valid_planlist_without_plans(sim: SimServer) -> None:
    """An empty feed is well-formed, has the planList root and holds no base plans."""
    sim.set_fault(Fault("empty"))
    answer = await fetch(sim.url)
    root = ET.fromstring(answer.body)
    assert (answer.status, root.tag) == (200, "planList")
    assert root.find("output") is not None
    assert root.findall("output/base_plan") == []


async def test_counted_fault_clears_itself_and_does_not_advance_the_cycle(sim: SimServer) -> None:
    """After `count` faulty answers the next request gets the feed the faults skipped over."""
    sim.set_fault(Fault("status", count=2, status=503))
    assert [(await fetch(sim.url)).status for _ in range(2)] == [503, 503]
    assert sim.stats() == {"requests": 2, "served": 0, "fault": None}
    assert (await fetch(sim.url)).body == load_sample_feeds()[0]


async def test_fault_until_cleared_persists_and_stats_show_its_remaining_count(sim: SimServer) -> None:
    """A fault without count stays until cleared; a counted one reports how many requests it has left."""
    sim.set_fault(Fault("html"))
    for _ in range(3):
        assert (await fetch(sim.url)).content_type == "text/html"
    sim.clear_fault()
    assert (await fetch(sim.url)).content_type == "application/xml"
    sim.set_fault(Fault("empty", count=3))
    await fetch(sim.url)
    assert sim.stats()["fault"] == {"kind": "empty", "count": 2, "seconds": 0.0, "status": 503, "size": 0}


async def test_set_feeds_replaces_the_sequence_and_restarts_the_cycle(sim: SimServer) -> None:
    """New feeds are served from their first one, whatever the old cycle's position."""
    await fetch(sim.url)
    sim.set_feeds([b"<planList/>", b"<planList><output/></planList>"])
    assert [(await fetch(sim.url)).body for _ in range(3)] == [
        b"<planList/>",
        b"<planList><output/></planList>",
        b"<planList/>",
    ]


async def test_control_endpoints_set_clear_and_report_a_fault(sim: SimServer) -> None:
    """Another process can drive the simulator through /_sim endpoints alone."""
    status, body = await control("PUT", f"{sim.base_url}/_sim/fault", {"kind": "status", "status": 500})
    assert (status, body["fault"]["kind"]) == (200, "status")
    assert (await fetch(sim.url)).status == 500
    assert (await control("DELETE", f"{sim.base_url}/_sim/fault"))[0] == 204
    assert (await fetch(sim.url)).status == 200
    status, stats = await control("GET", f"{sim.base_url}/_sim/stats")
    assert (status, stats) == (200, {"requests": 2, "served": 1, "fault": None})


@pytest.mark.parametrize(
    "bad_fault",
    [
        {"kind": "explode"},
        {"count": 1},
        {"kind": "status", "status": 200},
        {"kind": "status", "count": 0},
        {"kind": "latency", "seconds": -1},
        {"kind": "latency", "seconds": "slow"},
        {"kind": "drop", "count": True},
        {"kind": "oversize", "size": -5},
        {"kind": "drop", "colour": "red"},
        ["drop"],
    ],
)
async def test_fault_endpoint_rejects_a_bad_fault_with_400(sim: SimServer, bad_fault: object) -> None:
    """A malformed fault is refused and leaves the simulator serving normally."""
    assert (await control("PUT", f"{sim.base_url}/_sim/fault", bad_fault))[0] == 400
    assert sim.stats()["fault"] is None


async def test_feeds_endpoint_loads_files_or_generates_and_restarts_the_cycle(
    sim: SimServer, tmp_path: Path
) -> None:
    """Feeds replaced over HTTP are served from their first one."""
    feed_file = tmp_path / "feed.xml"
    feed_file.write_bytes(b"<planList><output/></planList>")
    feeds_url = f"{sim.base_url}/_sim/feeds"
    await fetch(sim.url)
    assert await control("PUT", feeds_url, {"files": [str(feed_file)]}) == (200, {"feeds": 1})
    assert (await fetch(sim.url)).body == feed_file.read_bytes()
    generate = {"generate": {"plans": 4, "zones": 2, "seed": 7}}
    assert await control("PUT", feeds_url, generate) == (200, {"feeds": 1})
    assert (await fetch(sim.url)).body == generate_feed(4, 2, seed=7)
    over_years = {"generate": {"plans": 4, "zones": 2, "seed": 7, "days": 2557}}
    assert await control("PUT", feeds_url, over_years) == (200, {"feeds": 1})
    assert (await fetch(sim.url)).body == generate_feed(4, 2, seed=7, days=2557)
    bad_bodies: list[object] = [
        {"files": [str(tmp_path / "missing.xml")]},
        {"files": []},
        {"generate": {}},
        {"generate": {"plans": 4, "zones": 2, "days": 0}},
        {"generate": {"plans": 4, "zones": 2, "days": "7y"}},
    ]
    for bad in bad_bodies:
        assert (await control("PUT", feeds_url, bad))[0] == 400


async def test_server_stops_listening_when_the_context_exits() -> None:
    """Leaving the context manager frees the port: the next connection is refused."""
    with SimServer() as server:
        url = server.url
        assert (await fetch(url)).status == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch(url)


async def test_stopping_does_not_wait_for_a_request_stuck_in_latency() -> None:
    """A test that ends while a client waits on a long latency fault is not held up by it."""
    with SimServer() as server:
        server.set_fault(Fault("latency", seconds=60))
        stuck = asyncio.create_task(fetch(server.url))
        await wait_for(lambda: server.stats()["requests"] == 1, "the request reaches the simulator", 5)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5
    with pytest.raises(aiohttp.ClientError):
        await stuck


async def test_client_hanging_up_mid_oversize_stream_is_not_a_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that stops reading a huge feed leaves the server serving and logging no error."""
    with caplog.at_level(logging.ERROR), SimServer() as server:
        server.set_fault(Fault("oversize", count=1, size=1 << 30))
        async with (
            aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session,
            session.get(server.url) as response,
        ):
            await response.content.readexactly(200_000)
        assert (await fetch(server.url)).body == load_sample_feeds()[0]
    errors = [
        (record.message, record.exc_text) for record in caplog.records if record.levelno >= logging.ERROR
    ]
    assert errors == []


def test_generate_feed_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same bytes, so generated fixtures are reproducible."""
    assert generate_feed(50, 3, seed=11) == generate_feed(50, 3, seed=11)
    assert generate_feed(50, 3, seed=11) != generate_feed(50, 3, seed=12)


def test_generate_feed_is_well_formed_with_the_requested_shape() -> None:
    """A generated feed parses and holds the asked-for base plans, zones per plan and a mix of sell modes."""
    root = ET.fromstring(generate_feed(300, 4, seed=3))
    base_plans = root.findall("output/base_plan")
    assert root.tag == "planList"
    assert len(base_plans) == 300
    assert {len(plan.findall("zone")) for plan in root.iter("plan")} == {4}
    assert {base.get("sell_mode") for base in base_plans} == {"online", "offline"}
    assert any(len(base.findall("plan")) == 2 for base in base_plans)
    assert len({base.get("base_plan_id") for base in base_plans}) == 300
    for base in base_plans:
        plan_ids = [plan.get("plan_id") for plan in base.findall("plan")]
        assert len(plan_ids) == len(set(plan_ids))
    # Escaped titles must come back as the original text, ampersands and quotes included.
    assert any("&" in (base.get("title") or "") for base in base_plans)


def test_generate_feed_times_fall_within_the_requested_days() -> None:
    """Plans start inside the window on whole minutes and last 30 to 240 minutes."""
    root = ET.fromstring(generate_feed(200, 1, seed=5, first_day=date(2030, 3, 1), days=10))
    for plan in root.iter("plan"):
        start = datetime.fromisoformat(plan.get("plan_start_date", ""))
        end = datetime.fromisoformat(plan.get("plan_end_date", ""))
        assert date(2030, 3, 1) <= start.date() < date(2030, 3, 11)
        assert start.second == 0
        assert 30 * 60 <= (end - start).total_seconds() <= 240 * 60


@contextlib.contextmanager
def cli_process(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`eventapi sim ARGS` as a process, with the feed URL it announced; killed on exit."""
    command = f"from eventapi.sim import main; raise SystemExit(main({list(args)!r}))"
    repo_root = Path(__file__).resolve().parents[1]
    with subprocess.Popen(
        [sys.executable, "-c", command], cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        try:
            ready, _, _ = select.select([process.stdout], [], [], 10)
            assert ready, "the simulator printed no URL within 10 s"
            yield process, process.stdout.readline().decode().strip()
        finally:
            process.kill()


def test_cli_prints_the_feed_url_and_stops_on_sigterm() -> None:
    """`main` serves on the asked port, announces the URL on one line and exits 0 on SIGTERM."""
    with cli_process("--port", "0") as (process, url):
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/api/events")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == load_sample_feeds()[0]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_cli_generates_plans_over_the_asked_number_of_days() -> None:
    """--generate-days spreads the generated plans over years, as bench-http's seven-year stack needs."""
    options = "--port 0 --generate-plans 60 --generate-zones 1 --generate-days 2557 --seed 4"
    with (
        cli_process(*options.split()) as (_process, url),
        urllib.request.urlopen(url, timeout=10) as response,
    ):
        served = response.read()
    assert served == generate_feed(60, 1, seed=4, days=2557)
    years = {plan.get("plan_start_date", "")[:4] for plan in ET.fromstring(served).iter("plan")}
    assert min(years) == "2027"
    assert max(years) >= "2031"


def test_cli_refuses_a_generated_feed_of_no_days() -> None:
    """--generate-days 0 is a usage error, not an empty feed served as if it were one."""
    with pytest.raises(SystemExit) as exited:
        main(["--generate-plans", "5", "--generate-days", "0"])
    assert exited.value.code == 2
