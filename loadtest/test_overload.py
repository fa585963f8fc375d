"""The overload harness's arithmetic: probe figures, flood summaries, thresholds, the kernel's counters.

Pure (no processes, no sockets): `.venv/bin/python -m pytest loadtest/test_overload.py`.
"""

from __future__ import annotations

import pytest

from loadtest.flood_clients import IDLE, SLOW, Connection, summarize_connections
from loadtest.overload import flood_checks, listen_overflows, probe_checks, service_env
from loadtest.probes import Probe, percentile, status_of, summarize_probes

NETSTAT = (
    "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops\n"
    "TcpExt: 0 0 17 17\n"
    "IpExt: InNoRoutes\n"
    "IpExt: 0\n"
)


def test_percentile_is_the_nearest_rank() -> None:
    """p99 of 100 latencies is the 99th slowest, not an interpolation that no probe measured."""
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 0.99), percentile(values, 0.5), percentile(values, 1.0)) == (99.0, 50.0, 100.0)
    assert percentile([], 0.99) == 0.0


def test_a_probe_counts_against_the_limit_when_slow_or_not_a_200() -> None:
    """A fast 503 or a timed-out probe is a failure as much as a slow 200."""
    probes = [
        Probe(0.0, 0.05, 200),
        Probe(0.1, 1.5, 200),
        Probe(0.2, 0.01, 503),
        Probe(0.3, 5.0, 0, "timed out"),
    ]
    summary = summarize_probes("/healthz", probes, limit_s=1.0)
    assert (summary.count, summary.ok, summary.over_limit) == (4, 2, 3)
    assert (summary.max_s, summary.slowest_at) == (5.0, 0.3)
    assert summary.errors == {"status 503": 1, "timed out": 1}
    assert not probe_checks(summary, 1.0, "/healthz")[0].passed


def test_no_probe_at_all_fails_the_check() -> None:
    """A probe thread that never ran must not pass for an all-fast run."""
    assert not probe_checks(summarize_probes("/healthz", [], 1.0), 1.0, "/healthz")[0].passed


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", 200),
        (b"HTTP/1.1 503 ", 503),
        (b"", 0),
        (b"junk", 0),
    ],
)
def test_status_of_reads_the_first_line(answer: bytes, status: int) -> None:
    """Anything but an HTTP status line is no answer (0), never a crash of the probe."""
    assert status_of(answer) == status


def flood_records() -> list[Connection]:
    return [
        # idle: answered at 0.5, closed by the server 75 s later; then its second connection, open at the end
        Connection(IDLE, opened_at=0.2, answered_at=0.5, status=200, ended_at=75.5, ended_by="server"),
        Connection(IDLE, opened_at=75.6, answered_at=75.7, status=200, ended_at=90.0, ended_by="client"),
        # an idle connection whose request was never answered
        Connection(IDLE, opened_at=0.3, ended_at=90.0, ended_by="client"),
        Connection(IDLE, ended_at=10.0, ended_by="connect"),
        # slow: closed by the server 75 s after opening, then again
        Connection(SLOW, opened_at=1.0, ended_at=76.0, ended_by="server", bytes_sent=26),
        Connection(SLOW, opened_at=76.1, ended_at=90.0, ended_by="client", bytes_sent=5),
    ]


def test_the_flood_summary_times_idle_connections_from_their_answer_and_slow_ones_from_opening() -> None:
    """Both are the server's wait: keep-alive after an answer, header read from the connection's start."""
    summary = summarize_connections(flood_records(), {IDLE: 3, SLOW: 1}, duration=90.0, bucket=5.0)
    idle, slow = summary[IDLE], summary[SLOW]
    assert (idle["opened"], idle["answered"], idle["unanswered"], idle["connect_failed"]) == (3, 2, 1, 1)
    assert idle["closed_by_server"] == 1 and idle["closed_after_s"]["max"] == 75.0
    assert idle["open_at_end"] == 2
    assert slow["closed_by_server"] == 1 and slow["closed_after_s"] == {"min": 75.0, "p50": 75.0, "max": 75.0}
    assert slow["closed_by_server_per_5s"][15] == 1 and sum(slow["closed_by_server_per_5s"]) == 1


def test_flood_checks_fail_an_unanswered_idle_request_and_pass_slow_ones_closed_at_the_timeout() -> None:
    """One request the server left hanging is the failure the flood is there to find."""
    summary = summarize_connections(flood_records(), {IDLE: 3, SLOW: 1}, duration=90.0)
    idle_check, slow_check = flood_checks(summary, timeout_s=75.0, margin_s=1.0)
    assert (idle_check.passed, slow_check.passed) == (False, True)


def test_slow_connections_closed_late_or_never_fail_the_check() -> None:
    """Granian's own 30 s default, or no timeout at all, must not pass for the chosen 75 s."""
    at_30 = [Connection(SLOW, opened_at=0.0, ended_at=30.0, ended_by="server")]
    never = [Connection(SLOW, opened_at=0.0, ended_at=90.0, ended_by="client")]
    for records in (at_30, never):
        summary = summarize_connections(records, {IDLE: 0, SLOW: 1}, duration=90.0)
        assert [check.passed for check in flood_checks(summary, 75.0, 1.0)] == [False]


def test_listen_overflows_are_read_by_name() -> None:
    """The counter's column moves between kernels: it is found by its header."""
    assert listen_overflows(NETSTAT) == 17
    assert listen_overflows("IpExt: InNoRoutes\nIpExt: 0\n") == 0


def test_set_overrides_the_base_settings_and_refuses_other_names() -> None:
    """--set only ever reaches EVENTAPI_* settings (the service reads nothing else)."""
    env = service_env(["EVENTAPI_MAX_CONNECTIONS_PER_WORKER=1024", "EVENTAPI_WORKERS=2"])
    assert env["EVENTAPI_MAX_CONNECTIONS_PER_WORKER"] == "1024" and env["EVENTAPI_WORKERS"] == "2"
    with pytest.raises(SystemExit):
        service_env(["PATH=/tmp"])
