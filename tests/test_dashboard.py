"""The Grafana dashboard and its provisioning as files (test_prometheus_live.py runs its queries)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
GRAFANA = REPO_ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "eventapi.json"
QUANTILES = ("0.5", "0.95", "0.99")  # of search duration: the D of RED


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(DASHBOARD.read_bytes())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def datasource_uid() -> str:
    [source] = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    uid: str = source["uid"]
    return uid


def compose_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load((REPO_ROOT / "podman-compose.yml").read_text())["services"][name]
    return service


def test_every_query_names_the_provisioned_datasource_and_no_import_placeholder() -> None:
    """A provisioned dashboard cannot resolve `${DS_...}` (import-only): every panel names the fixed uid."""
    assert "${DS_" not in DASHBOARD.read_text()
    expected = {"type": "prometheus", "uid": datasource_uid()}
    for panel in panels():
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"] and all(target["datasource"] == expected for target in panel["targets"])
    assert all(variable["datasource"] == expected for variable in dashboard()["templating"]["list"])


def test_the_datasource_and_the_dashboards_are_where_compose_puts_them() -> None:
    """The datasource URL is compose's Prometheus; the provider reads the directory compose mounts."""
    [source] = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    prometheus = compose_service("prometheus")
    assert source["url"] == "http://prometheus:9090" and "monitoring" in prometheus["profiles"]
    [provider] = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "eventapi.yaml").read_text())[
        "providers"
    ]
    grafana = compose_service("grafana")
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert grafana["profiles"] == ["grafana"], (
        "a profile of its own: no Grafana image must not stop Prometheus"
    )


def test_the_panels_cover_red_for_search_caches_freshness_refreshes_and_instances() -> None:
    """What the issue asks the dashboard to show is each in some panel's query."""
    queries = "\n".join(target["expr"] for panel in panels() for target in panel["targets"])
    for wanted in (
        r'eventapi_requests_total\{[^}]*route=~"/search\|/events"',  # rate
        r'status=~"5\.\."',  # errors
        *(rf"histogram_quantile\({q}, sum by \(le\) \(rate\(eventapi_request_d" for q in QUANTILES),
        r'eventapi_lru_total\{[^}]*result="hit"',
        r'status="304"',
        r"time\(\) - max\(eventapi_last_refresh_success_timestamp_seconds",
        r"eventapi_refresh_runs_total",
        r"eventapi_refresh_duration_seconds_bucket",
        r"sum by \(kind\) \(increase\(eventapi_plans_skipped_total",
        r"eventapi_events_served",
        r"\bup\{",
        r"eventapi_store_up",
        r"eventapi_worker_resident_memory_bytes",
        r"eventapi_worker_open_fds",
    ):  # fmt: skip
        assert re.search(wanted, queries), f"no panel queries {wanted}"


def test_queries_read_the_eventapi_job_and_say_why_they_default_to_zero() -> None:
    """`or vector(0)` hides a missing series: only where absence is normal, and the panel says so."""
    for panel in panels():
        for target in panel["targets"]:
            assert 'job="eventapi"' in target["expr"], panel["title"]
            if "or vector(0)" in target["expr"]:
                assert "`or vector(0)`" in panel["description"], panel["title"]


def test_panels_have_unique_ids_and_fit_the_grid() -> None:
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    assert dashboard()["uid"] == "eventapi"
