"""The alert rules and the Grafana dashboard against a real Prometheus scraping a real two-worker server.

Prometheus (1 s scrape and evaluation) scrapes `eventapi serve` (two workers, Redis, the simulator as
the provider, a 1 s refresh interval) and loads deploy/prometheus/alerts.yml plus a copy whose `for:`
durations are 1 s. Run with `-s` to see what was checked:
`.venv/bin/python -m pytest -s -q tests/test_prometheus_live.py`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from eventapi.sim import SimServer
from tests.support.prometheus import INSTALL_HINT, PrometheusServer, prometheus_binary
from tests.support.redis_server import RedisServer, key_prefix
from tests.support.service_process import ServiceProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "eventapi.json"
RANGE = "starts_at=2021-01-01&ends_at=2022-12-31"
SHORTENED = {"rules": "shortened"}  # the label that tells the copy's alerts from the real ones
# What Grafana puts in place of its variables, for a 1 s scrape interval: $__rate_interval is
# max($__interval + scrape interval, 4 x scrape interval); $__range is the dashboard's span.
GRAFANA_VARIABLES = {"$__rate_interval": "4s", "$__interval": "1s", "$__range": "5m", "$instance": ".*"}
# Panels showing what the test causes: (title, refId) -> (labels of a series that must be there, whether
# it must be above 0). The 503's rate is back to 0 by the time the panel is asked: there, not above 0.
CAUSED: dict[tuple[str, str], list[tuple[dict[str, str], bool]]] = {
    ("Errors by status (all routes)", "A"): [({"status": "400"}, True), ({"status": "503"}, False)],
    ("Revalidations (304) per second", "A"): [({}, True)],
    ("Plans skipped by kind", "A"): [({"kind": "bad_date"}, True)],
    ("Events served", "A"): [({}, True)],
}

pytestmark = pytest.mark.skipif(
    prometheus_binary() is None or shutil.which("promtool") is None,
    reason=f"prometheus and promtool are not installed: {INSTALL_HINT}",
)


def say(line: str) -> None:
    """One line of what was checked, shown with `pytest -s`."""
    print(f"prometheus-live: {line}", flush=True)


@dataclass
class Stack:
    service: ServiceProcess
    prometheus: PrometheusServer
    sim: SimServer
    redis: RedisServer


def shortened_rules(target: Path) -> Path:
    """alerts.yml with every `for:` at 1 s and a label that marks its alerts, in a group of its own."""
    document = yaml.safe_load(ALERTS.read_text())
    for group in document["groups"]:
        group["name"] += "-shortened"
        for rule in group["rules"]:
            rule["for"] = "1s"
            rule["labels"] = {**rule.get("labels", {}), **SHORTENED}
    target.write_text(yaml.safe_dump(document))
    return target


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis (append-only, so a restart keeps the data), the simulator, the server and Prometheus."""
    work = tmp_path_factory.mktemp("prometheus-live")
    with contextlib.ExitStack() as started:
        redis = started.enter_context(RedisServer(["--appendonly", "yes"], data_dir=work / "redis"))
        sim = started.enter_context(SimServer())
        settings = {
            "EVENTAPI_PROVIDER_URL": sim.url, "EVENTAPI_WORKERS": "2", "EVENTAPI_REFRESH_INTERVAL": "1",
            "EVENTAPI_REDIS_URL": redis.url, "EVENTAPI_REDIS_PREFIX": key_prefix(),
            # No per-worker copy of the days: a search miss reads Redis, so an outage can answer 503.
            "EVENTAPI_DAY_CACHE_BYTES": "0",
        }  # fmt: skip
        service = started.enter_context(ServiceProcess(settings, work / "service.log"))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS), str(shortened_rules(work / "alerts.shortened.yml"))],
            "scrape_configs": [
                {"job_name": "eventapi", "static_configs": [{"targets": [f"127.0.0.1:{service.port}"]}]}
            ],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = started.enter_context(
            PrometheusServer(work / "prometheus.yml", work / "tsdb", work / "prometheus.log")
        )
        prometheus.wait_for(lambda: target_up(prometheus), "the eventapi target is up")
        say(f"Prometheus {prometheus.base_url} scrapes eventapi serve at 127.0.0.1:{service.port}: up")
        yield Stack(service, prometheus, sim, redis)


def target_up(prometheus: PrometheusServer) -> bool | None:
    targets = prometheus.api("targets")["activeTargets"]
    return True if [t["health"] for t in targets if t["labels"]["job"] == "eventapi"] == ["up"] else None


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_every_rule_evaluates_with_health_ok(stack: Stack) -> None:
    """A rule Prometheus cannot evaluate (bad PromQL at run time, a type error) never fires."""

    def evaluated() -> list[tuple[str, dict[str, Any]]] | None:
        groups = stack.prometheus.api("rules")["groups"]
        rules = [(group["name"], rule) for group in groups for rule in group["rules"]]
        return rules if rules and all(rule["health"] != "unknown" for _, rule in rules) else None

    rules = stack.prometheus.wait_for(evaluated, "every rule has been evaluated")
    for group, rule in rules:
        say(f"rule {group}/{rule['name']}: health {rule['health']}, state {rule['state']}")
    assert len(rules) == 2 * len(yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"])
    assert {rule["name"]: rule.get("lastError", "") for _, rule in rules if rule["health"] != "ok"} == {}


class Traffic:
    """Searches in a loop while the panels are checked: hits, misses, 304s and 400s keep every rate fed."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self.statuses: dict[int, int] = {}

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        second = 0
        while not self._stop.is_set():
            second = (second + 1) % 3600
            status, headers, _ = get(f"{self._base_url}/search?{RANGE}")
            etag = headers.get("etag")
            answers = [status, get(f"{self._base_url}/search?{RANGE}")[0]]  # the second one: a hit
            if etag:
                answers.append(get(f"{self._base_url}/search?{RANGE}", {"If-None-Match": etag})[0])
            answers.append(get(f"{self._base_url}/search?starts_at=soon")[0])
            miss = f"starts_at=2021-01-01T00:{second // 60:02d}:{second % 60:02d}&ends_at=2022-12-31"
            answers.append(get(f"{self._base_url}/search?{miss}")[0])
            for answer in answers:
                self.statuses[answer] = self.statuses.get(answer, 0) + 1
            self._stop.wait(0.05)


def grafana_expr(expr: str) -> str:
    """A panel's expression with Grafana's variables replaced, longest names first."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expression) of every query of the dashboard."""
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def panel_answer(
    prometheus: PrometheusServer, query: str, caused: list[tuple[dict[str, str], bool]]
) -> list[dict[str, Any]] | None:
    """The query's series when it has some, all finite, and the caused ones are there (above 0 if asked)."""
    result: list[dict[str, Any]] = prometheus.api("query", query=query)["result"]
    values = [float(series["value"][1]) for series in result]
    if not result or not all(math.isfinite(value) for value in values):
        return None
    for labels, positive in caused:
        found = [value for series, value in zip(result, values, strict=True)
                 if labels.items() <= series["metric"].items()]  # fmt: skip
        if not found or (positive and found[0] <= 0):
            return None
    return result


def cause_a_503(stack: Stack) -> None:
    """A search the workers hold no answer for, while Redis is stopped: 503 unavailable."""
    stack.redis.stop()
    try:
        status, _, body = get(f"{stack.service.base_url}/search?starts_at=2021-03-03&ends_at=2021-03-04")
    finally:
        stack.redis.start()
    assert (status, orjson.loads(body)["error"]["code"]) == (503, "unavailable")
    stack.service.wait_until(lambda: stack.service.get("/readyz")[0] == 200, "ready again after Redis")
    say("caused: a 503 unavailable (a search miss while Redis was stopped); Redis is back")


def test_every_dashboard_panel_returns_data(stack: Stack) -> None:
    """Each panel's query, as Grafana would send it, is accepted and returns finite values; the test
    causes what the panels count (304, 400, 503, a plan refused by the simulator's second answer)."""
    cause_a_503(stack)
    with Traffic(stack.service.base_url) as traffic:
        [definition] = [v["definition"] for v in orjson.loads(DASHBOARD.read_bytes())["templating"]["list"]]
        selector = re.fullmatch(r"label_values\((.+), instance\)", definition)
        assert selector is not None
        instances = stack.prometheus.api("label/instance/values", **{"match[]": selector.group(1)})
        assert instances == [f"127.0.0.1:{stack.service.port}"]
        say(f"variable $instance ({definition}): {instances}")
        for title, ref, expr in dashboard_targets():
            query = grafana_expr(expr)

            caused = CAUSED.get((title, ref), [])
            result = stack.prometheus.wait_for(
                functools.partial(panel_answer, stack.prometheus, query, caused),
                f"panel {title!r} {ref} returns data: {query}",
                30,
            )
            shown = ", ".join(
                f"{series['metric'] or '{}'}={float(series['value'][1]):.4g}" for series in result[:3]
            )
            say(f"panel {title!r} {ref}: {len(result)} series: {shown}")
    say(f"traffic while checking: {dict(sorted(traffic.statuses.items()))}")


def test_the_metrics_pass_promtool_check_metrics(stack: Stack) -> None:
    """What Prometheus scrapes (fleet figures, per-worker gauges included) follows the format's rules."""
    status, _, exposition = get(f"{stack.service.base_url}/metrics")
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=30, check=False
    )
    assert (status, checked.returncode, checked.stdout + checked.stderr) == (200, 0, b"")
    say(f"curl /metrics | promtool check metrics: clean ({exposition.count(b'# TYPE')} metric families)")


def test_the_stale_data_alert_fires_once_the_provider_stops(stack: Stack) -> None:
    """No success for 10 refresh intervals: EventapiDataStale reaches firing (its `for:` shortened to 1 s)."""

    def stale_alerts() -> list[dict[str, Any]]:
        return [
            alert for alert in stack.prometheus.api("alerts")["alerts"]
            if alert["labels"]["alertname"] == "EventapiDataStale" and alert["labels"].get("rules")
        ]  # fmt: skip

    # On a loaded machine a refresh may fail or lag now and then: start from a fresh fleet.
    stack.prometheus.wait_for(
        lambda: (
            (stack.service.get("/status")[1]["refresh"]["last_error"] is None and stale_alerts() == [])
            or None
        ),
        "fresh data: a refresh succeeded and the alert is not even pending",
        deadline=30,
    )
    stack.sim.__exit__(None, None, None)  # the provider goes away; refreshes fail from now on
    say("provider stopped; waiting for EventapiDataStale (threshold 10 x 1 s, for: 1s)")
    firing = stack.prometheus.wait_for(
        lambda: [alert for alert in stale_alerts() if alert["state"] == "firing"] or None,
        "EventapiDataStale fires",
        deadline=60,
    )
    alert = firing[0]
    say(f"alert firing: {alert['labels']} active since {alert['activeAt']}, value {alert['value']}")
    say(f"  description: {alert['annotations']['description']}")
    say(f"  /status refresh.last_error: {stack.service.get('/status')[1]['refresh']['last_error']}")
