"""End to end with real processes: Granian serving eventapi, the simulator as provider, real Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventapi.sim import Fault, SimServer
from tests.support.sample_service import LATEST, SAMPLE_RANGE, latest_values, serve_the_three_samples
from tests.support.service_process import ServiceProcess, run_command


@pytest.mark.parametrize("store", ["redis", "embedded"])
def test_history_and_ids_survive_a_restart(
    store: str, sim: SimServer, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """322 left the feed but stays; 444 never shows; a restarted service serves the same ids and values."""
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_REFRESH_INTERVAL": "0.2"}
    if store == "redis":
        settings |= {"EVENTAPI_REDIS_URL": redis_url, "EVENTAPI_REDIS_PREFIX": redis_prefix}
    else:
        settings |= {"EVENTAPI_SNAPSHOT_PATH": str(tmp_path / "events.json")}
    with ServiceProcess(settings, tmp_path / "service.log") as service:
        serve_the_three_samples(service, sim)
        _, before = service.get(SAMPLE_RANGE)
    sim.set_fault(Fault("status", status=503))  # the provider is down for the restarted service
    with ServiceProcess(settings, tmp_path / "service.log") as restarted:
        _, after = restarted.get(SAMPLE_RANGE)
    assert after == before
    assert "Tributo a Juanito Valderrama" not in {e["title"] for e in after["data"]["events"]}


def test_two_workers_serve_the_same_answers(
    sim: SimServer, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """With EVENTAPI_WORKERS=2 on one Redis, every worker answers with the fleet's data."""
    settings = {
        "EVENTAPI_PROVIDER_URL": sim.url,
        "EVENTAPI_REFRESH_INTERVAL": "0.2",
        "EVENTAPI_WORKERS": "2",
        "EVENTAPI_REDIS_URL": redis_url,
        "EVENTAPI_REDIS_PREFIX": redis_prefix,
    }
    with ServiceProcess(settings, tmp_path / "service.log") as service:
        serve_the_three_samples(service, sim)
        # The other worker learns of the last refresh within its 250 ms generation poll.
        service.wait_until(
            lambda: len({str(service.get(SAMPLE_RANGE)[1]) for _ in range(20)}) == 1, "every worker agrees"
        )
        assert latest_values(service) == LATEST
        # Both workers take requests (a new connection each): the agreement is not one worker's alone.
        assert len({service.get("/status")[1]["instance"]["pid"] for _ in range(20)}) == 2


def test_bad_query_over_http_names_the_parameter(sim: SimServer, tmp_path: Path) -> None:
    """Over a real socket, with the worker on uvloop (Granian's --loop auto may pick another loop)."""
    with ServiceProcess({"EVENTAPI_PROVIDER_URL": sim.url}, tmp_path / "service.log") as service:
        assert "event loop uvloop" in service.log()
        status, body = service.get("/search?starts_at=2021-02-30")
        assert status == 400 and body["error"]["code"] == "invalid_parameter"
        assert "starts_at" in body["error"]["message"]
        assert service.get("/events?ends_at=2021-01-01&ends_at=2021-01-02")[0] == 400


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENTAPI_PORT", "eighty"),
        ("EVENTAPI_REFRESH_INTERVAL", "-1"),
        ("EVENTAPI_TIMEZONE", "Mars/Olympus"),
        ("EVENTAPI_REDIS_URL", "localhost:6379"),
        ("EVENTAPI_WORKERS", "0"),
        ("EVENTAPI_LOG_LEVEL", "LOUD"),
        ("EVENTAPI_METRICS_DIR", "/dev/null"),  # not a directory
        ("EVENTAPI_METRICS_DIR", "/dev/null/metrics"),  # cannot be made: found when serve starts
    ],
)
def test_bad_setting_stops_start_up_with_one_line_naming_it(variable: str, value: str) -> None:
    """Exit code 2 and a single stderr line with the variable, the value and the expected form."""
    result = run_command(["serve"], {variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0] and repr(value) in lines[0] and "expected" in lines[0]


def test_refresh_command_exits_by_outcome(sim: SimServer, redis_url: str, redis_prefix: str) -> None:
    """`eventapi refresh` does one cycle: 0 when it stored the feed, non-zero when the provider failed."""
    settings = {
        "EVENTAPI_PROVIDER_URL": sim.url,
        "EVENTAPI_REDIS_URL": redis_url,
        "EVENTAPI_REDIS_PREFIX": redis_prefix,
        "EVENTAPI_PROVIDER_TIMEOUT": "2",
    }
    ok = run_command(["refresh"], settings)
    assert (ok.returncode, ok.stdout.strip()) == (0, "refresh: refreshed")
    sim.set_fault(Fault("malformed"))
    failed = run_command(["refresh"], settings)
    assert failed.returncode == 1 and "refresh: failed" in failed.stdout
    assert "not well-formed" in failed.stderr


def test_healthcheck_command_exits_0_only_while_the_server_on_its_port_answers(
    sim: SimServer, tmp_path: Path
) -> None:
    """The exec liveness probe of images without curl (deploy/k8s/overlays/podman) relies on it."""
    settings = {"EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_HOST": "0.0.0.0"}
    with ServiceProcess(settings, tmp_path / "service.log", ready_path="/healthz") as service:
        port = {"EVENTAPI_PORT": str(service.port), "EVENTAPI_HOST": "0.0.0.0"}
        assert run_command(["healthcheck"], port).returncode == 0
    stopped = run_command(["healthcheck"], port)
    assert stopped.returncode == 1 and "/healthz" in stopped.stderr


def test_demo_shows_the_simulators_events_with_no_network(tmp_path: Path) -> None:
    """`eventapi demo` wires its own simulator to the service: events are searchable within seconds."""
    with ServiceProcess({}, tmp_path / "demo.log", command="demo") as demo:
        demo.wait_until(
            lambda: len(demo.get(SAMPLE_RANGE)[1]["data"]["events"]) == 3, "the demo serves events"
        )
