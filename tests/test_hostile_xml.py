"""Hostile XML through the real fetch path: simulator → ProviderFeed → refresher → store → /search.

Every attack is refused or bounded, nothing stored changes, the next good feed is taken, the
refusal is logged once per refresh, and the memory of the process that parses stays bounded.

Peak memory is measured in a fresh process per case (PROBE below): the kernel's high-water mark
only ever grows, so one process cannot measure several cases. VmHWM of /proc/self/status is read
rather than getrusage's ru_maxrss, because Linux carries ru_maxrss across exec: a child spawned
by this (large) test process would start with the test process's peak and hide its own growth.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pytest

from eventapi.refresh.loop import Outcome
from eventapi.refresh.provider import ProviderFeed, RetryPolicy
from eventapi.settings import Settings
from eventapi.sim import Fault, SimServer
from eventapi.sim.feeds import load_sample_feeds
from eventapi.store import Store
from eventapi.wiring import Worker
from tests.support.asgi_client import call
from tests.support.workers import worker

MIB = 1024 * 1024
DEFAULT_CAP = Settings().feed_max_bytes  # 256 MiB
SAMPLE_RANGE = b"starts_at=2021-02-01&ends_at=2022-07-03"
# An entity attack refused at its DOCTYPE costs the parser a few KiB; 64 MiB is the brief's bound,
# far above an interpreter's noise and far below what any expansion would take.
ENTITY_RSS_BOUND = 64 * MIB
# A refused stream may be read a little past the cap: socket buffers and aiohttp's read-ahead.
READ_PAST_CAP_SLACK = 32 * MIB

_XML = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_BODY = b'<planList><output><base_plan base_plan_id="1" sell_mode="online" title="T"/></output></planList>'


def quadratic_blowup() -> bytes:
    """One 100 KB entity referenced 10,000 times: 1 GB once expanded, from a 140 KB document."""
    entity = b"x" * 100_000
    return (
        _XML + b'<!DOCTYPE planList [<!ENTITY a "' + entity + b'">]>\n'
        b"<planList><output>" + b"&a;" * 10_000 + b"</output></planList>"
    )


def billion_laughs() -> bytes:
    """Ten levels of entities, each ten of the one below: 10^9 "lol"s once expanded."""
    levels = [b'<!ENTITY lol0 "lol">']
    levels += [b'<!ENTITY lol%d "%s">' % (n, b"&lol%d;" % (n - 1) * 10) for n in range(1, 10)]
    return _XML + b"<!DOCTYPE planList [" + b"".join(levels) + b"]>\n<planList>&lol9;</planList>"


def external_entity() -> bytes:
    """XXE: an entity whose replacement text is a local file."""
    return (
        _XML + b'<!DOCTYPE planList [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        b'<planList><output><base_plan base_plan_id="1" sell_mode="online" title="T">&xxe;'
        b"</base_plan></output></planList>"
    )


def parameter_entity(dtd_url: str) -> bytes:
    """A parameter entity that would fetch an external DTD (from the simulator, so a fetch shows)."""
    return (
        _XML + b'<!DOCTYPE planList [<!ENTITY % remote SYSTEM "' + dtd_url.encode() + b'"> %remote;]>\n'
        + _BODY
    )  # fmt: skip


def plain_doctype() -> bytes:
    """A DOCTYPE with an external subset and nothing else."""
    return _XML + b'<!DOCTYPE planList SYSTEM "planList.dtd">\n' + _BODY


def doctype_after_root() -> bytes:
    """XML allows a DOCTYPE only before the root element."""
    return _XML + _BODY + b'\n<!DOCTYPE planList [<!ENTITY a "b">]>\n'


def undeclared_entity() -> bytes:
    """An entity reference with no DOCTYPE at all."""
    return _XML + b"<planList><output>&xxe;</output></planList>"


def deep_nesting() -> bytes:
    """100,000 nested elements inside the root."""
    return _XML + b"<planList>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</planList>"


def huge_attribute(size: int) -> bytes:
    """A well-formed feed whose one title attribute is `size` bytes long."""
    return (
        _XML + b'<planList><output><base_plan base_plan_id="1" sell_mode="online" title="'
        + b"x" * size + b'"></base_plan></output></planList>'
    )  # fmt: skip


# Case id → (document, given the simulator's feed URL) and the words the refusal must name.
DOCUMENT_CASES: dict[str, tuple[Callable[[str], bytes], str]] = {
    "quadratic-blowup": (lambda url: quadratic_blowup(), "DOCTYPE"),
    "billion-laughs": (lambda url: billion_laughs(), "DOCTYPE"),
    "xxe-local-file": (lambda url: external_entity(), "DOCTYPE"),
    "parameter-entity": (lambda url: parameter_entity(url + "?dtd"), "DOCTYPE"),
    "plain-doctype": (lambda url: plain_doctype(), "DOCTYPE"),
    "doctype-after-root": (lambda url: doctype_after_root(), "not well-formed"),
    "undeclared-entity": (lambda url: undeclared_entity(), "undefined entity"),
    "deep-nesting-100k": (lambda url: deep_nesting(), "deeper than 16 levels"),
}


# --- the service, in process ------------------------------------------------------------------


@pytest.fixture
async def service(sim: SimServer, store: Store) -> AsyncIterator[Worker]:
    settings = Settings(provider_url=sim.url, provider_timeout=10.0, feed_max_bytes=MIB)
    feed = ProviderFeed(
        sim.url,
        settings.tz,
        timeout=settings.provider_timeout,
        max_bytes=settings.feed_max_bytes,
        retry=RetryPolicy(attempts=2, base_delay=0.0),
    )
    built = worker(settings, store, feed)
    await built.store.open()
    yield built
    await feed.close()
    await built.store.close()


@dataclass(frozen=True)
class Snapshot:
    """What a client and the store show: the served answer and the generation."""

    answer: bytes
    generation: int


async def snapshot(service: Worker) -> Snapshot:
    reply = await call(service.app, "/search", SAMPLE_RANGE)
    assert reply.status == 200
    return Snapshot(reply.body, await service.store.generation())


async def seeded(service: Worker, sim: SimServer) -> Snapshot:
    """Store the first sample answer and return what is served from it."""
    sim.set_feeds(load_sample_feeds()[:1])
    assert await service.refresher.refresh_once(force=True) == Outcome.REFRESHED
    before = await snapshot(service)
    assert b"Camela" in before.answer
    return before


async def assert_refused_then_recovers(service: Worker, sim: SimServer, before: Snapshot, cause: str) -> None:
    """The hostile refresh failed naming `cause`, changed nothing, and the next good feed is taken."""
    assert await service.refresher.refresh_once(force=True) == Outcome.FAILED
    assert cause in (service.refresher.status.last_error or "")
    assert await snapshot(service) == before
    sim.clear_fault()
    sim.set_feeds(load_sample_feeds()[1:2])  # the second answer changes values the first one set
    assert await service.refresher.refresh_once(force=True) == Outcome.REFRESHED
    assert service.refresher.status.last_error is None
    after = await snapshot(service)
    assert after.generation > before.generation and after.answer != before.answer


@pytest.mark.parametrize("case", list(DOCUMENT_CASES))
async def test_hostile_document_is_refused_and_changes_nothing(
    service: Worker, sim: SimServer, case: str
) -> None:
    """Entity attacks, DTDs, deep nesting: the refresh fails naming the cause, answers stay, then recover."""
    before = await seeded(service, sim)
    document, cause = DOCUMENT_CASES[case]
    sim.set_feeds([document(sim.url)])
    requests = sim.stats()["requests"]
    await assert_refused_then_recovers(service, sim, before, cause)
    # One request for the hostile feed and one for the good one: no DTD or entity was fetched.
    assert sim.stats()["requests"] == requests + 2


async def test_endless_stream_is_refused_at_the_cap_and_changes_nothing(
    service: Worker, sim: SimServer
) -> None:
    """A 1 GiB feed without Content-Length against a 1 MiB cap: refused at the cap, answers stay."""
    before = await seeded(service, sim)
    sim.set_fault(Fault("oversize", size=1 << 30))
    started = time.monotonic()
    await assert_refused_then_recovers(service, sim, before, f"cap of {MIB} bytes")
    assert time.monotonic() - started < 5  # streaming 1 GiB alone takes longer


async def test_each_refusal_is_logged_once(
    service: Worker, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Two refreshes of a billion-laughs feed: one warning each naming the cause, and nothing else."""
    await seeded(service, sim)
    sim.set_feeds([billion_laughs()])
    requests = sim.stats()["requests"]
    caplog.clear()
    with caplog.at_level("INFO"):
        for _ in range(2):
            assert await service.refresher.refresh_once(force=True) == Outcome.FAILED
    warnings = [record for record in caplog.records if record.levelname in ("WARNING", "ERROR", "CRITICAL")]
    assert [record.getMessage() for record in warnings] == [
        "refresh failed, stored events unchanged: feed has a DOCTYPE; refused"
        " (no DTDs or entities are accepted)"
    ] * 2
    assert sim.stats()["requests"] == requests + 2  # refused, not retried


# --- peak memory, one fresh process per case --------------------------------------------------

# Fetches argv[1] once with a cap of argv[2] bytes and a timeout of argv[3] s; prints one JSON line.
PROBE = """
import asyncio, json, sys, time, zoneinfo
from eventapi.errors import FeedError
from eventapi.refresh.provider import ProviderFeed, RetryPolicy

def status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)

async def main(url, cap, timeout):
    feed = ProviderFeed(url, zoneinfo.ZoneInfo("Europe/Madrid"), timeout=timeout, max_bytes=cap,
                        retry=RetryPolicy(attempts=1))
    start_kib, started = status_kib("VmRSS"), time.monotonic()
    try:
        parsed = await feed.fetch()
        result = {"outcome": "parsed", "error": None, "events": len(parsed.events)}
    except FeedError as exc:
        result = {"outcome": type(exc).__name__, "error": str(exc), "events": 0}
    result["seconds"] = time.monotonic() - started
    await feed.close()
    result["growth_bytes"] = (status_kib("VmHWM") - start_kib) * 1024
    print(json.dumps(result))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


class ByteCountingRelay:
    """A TCP relay in front of the simulator that counts the bytes handed on to its clients."""

    def __init__(self, upstream_url: str) -> None:
        host_port = upstream_url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._path = "/" + upstream_url.split("//", 1)[1].split("/", 1)[1]
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._sockets: list[socket.socket] = []
        self._pumps: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.bytes_to_client = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}{self._path}"

    def __enter__(self) -> ByteCountingRelay:
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            pumps = [
                threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True),
                threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True),
            ]
            with self._lock:
                self._sockets += [client, upstream]
                self._pumps += pumps
            for pump in pumps:
                pump.start()

    def wait_until_done(self, seconds: float = 10.0) -> None:
        """Wait until every connection is over (its client hung up), so bytes_to_client is final."""
        deadline = time.monotonic() + seconds
        with self._lock:
            pumps = list(self._pumps)
        for pump in pumps:
            pump.join(max(0.0, deadline - time.monotonic()))
        assert not any(pump.is_alive() for pump in pumps), f"the relay still pumps after {seconds:g} s"

    def _pump(self, source: socket.socket, target: socket.socket, count: bool) -> None:
        try:
            while chunk := source.recv(256 * 1024):
                target.sendall(chunk)
                if count:
                    with self._lock:
                        self.bytes_to_client += len(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def start_probe(url: str, cap: int, timeout: float) -> subprocess.Popen[str]:
    """Start fetching `url` once in a fresh interpreter."""
    command = [sys.executable, "-c", PROBE, url, str(cap), str(timeout)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def probe_result(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The probe's outcome, error, seconds and peak RSS growth, once it is done."""
    try:
        stdout, stderr = process.communicate(timeout=timeout + 60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr[-2000:]
    result: dict[str, Any] = json.loads(stdout.strip().rsplit("\n", 1)[-1])
    return result


def probe(url: str, cap: int, timeout: float = 10.0) -> dict[str, Any]:
    """Fetch `url` once in a fresh interpreter and wait for the result."""
    return probe_result(start_probe(url, cap, timeout), timeout)


def report(case: str, result: dict[str, Any]) -> None:
    """One line per case in the test's output (pytest -s, or the captured stdout of a failure)."""
    growth = result["growth_bytes"] / MIB
    print(f"\n{case}: {result['outcome']}: {result['error']} ({growth:.1f} MiB, {result['seconds']:.2f} s)")


@pytest.mark.parametrize("case", [case for case in DOCUMENT_CASES if "DOCTYPE" in DOCUMENT_CASES[case][1]])
def test_entity_attack_peak_memory_stays_bounded(sim: SimServer, case: str) -> None:
    """Refused at the DOCTYPE before any expansion: the parsing process grows by far less than 64 MiB."""
    document, cause = DOCUMENT_CASES[case]
    sim.set_feeds([document(sim.url)])
    result = probe(sim.url, DEFAULT_CAP)
    report(case, result)
    assert result["outcome"] == "FeedRefused" and cause in result["error"]
    assert result["growth_bytes"] < ENTITY_RSS_BOUND


def test_deep_nesting_peak_memory_stays_bounded(sim: SimServer) -> None:
    """100,000 levels are refused at level 17, not held as a stack."""
    sim.set_feeds([deep_nesting()])
    result = probe(sim.url, DEFAULT_CAP)
    report("deep-nesting-100k", result)
    assert result["outcome"] == "FeedRefused" and "deeper than 16" in result["error"]
    assert result["growth_bytes"] < ENTITY_RSS_BOUND


# A timeout above the parse time of 256 MiB (about 20 s on a 2-core box), so the cap decides.
GIB_STREAM_TIMEOUT = 90.0


@pytest.fixture(scope="module", autouse=True)
def gib_stream_fetch() -> Iterator[tuple[subprocess.Popen[str], ByteCountingRelay]]:
    """Start the 1 GiB fetch with the module's first test: it parses for ~20 s while the others run."""
    with SimServer() as server, ByteCountingRelay(server.url) as relay:
        server.set_fault(Fault("oversize", size=1 << 30))
        process = start_probe(relay.url, DEFAULT_CAP, GIB_STREAM_TIMEOUT)
        try:
            yield process, relay
        finally:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def gib_stream(gib_stream_fetch: tuple[subprocess.Popen[str], ByteCountingRelay]) -> dict[str, Any]:
    """A 1 GiB stream without Content-Length against the default 256 MiB cap: the fetch's result."""
    process, relay = gib_stream_fetch
    result = probe_result(process, GIB_STREAM_TIMEOUT)
    relay.wait_until_done()  # the probe has exited: its connection ends, and the count with it
    result["bytes_sent"] = relay.bytes_to_client
    report("1-GiB-stream", result)
    print(f"1-GiB-stream: {result['bytes_sent']} bytes sent to the client, cap {DEFAULT_CAP}")
    return result


def test_gib_stream_is_refused_at_the_default_cap_and_stops_reading(gib_stream: dict[str, Any]) -> None:
    """Refused at 256 MiB, and the connection is dropped there: the other 768 MiB are never read."""
    assert gib_stream["outcome"] == "FeedRefused"
    assert gib_stream["error"] == f"feed larger than the cap of {DEFAULT_CAP} bytes"
    assert DEFAULT_CAP <= gib_stream["bytes_sent"] < DEFAULT_CAP + READ_PAST_CAP_SLACK


def test_gib_stream_peak_memory_is_bounded_by_the_cap(gib_stream: dict[str, Any]) -> None:
    """Growth stays within 1.5x the cap: the events parsed before the cap are held until the refusal."""
    assert gib_stream["growth_bytes"] < 1.5 * DEFAULT_CAP


def test_huge_attribute_is_parsed_or_refused_within_the_timeout(sim: SimServer) -> None:
    """A 200 MB attribute in a feed under a 256 MiB cap ends in seconds, not by the provider timeout."""
    sim.set_feeds([huge_attribute(200_000_000)])
    result = probe(sim.url, DEFAULT_CAP, timeout=2.5)
    report("200-MB-attribute", result)
    # Refused after its first mebibyte without an element, long before the timeout, at little cost.
    assert "single token" in (result["error"] or "")
    assert result["growth_bytes"] < 64 * MIB
