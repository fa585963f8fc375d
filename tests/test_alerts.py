"""The alert rules in deploy/prometheus/: promtool's checks and unit tests, and the conventions they keep."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
SEVERITIES = {"critical", "warning"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed: apt-get install -y prometheus (Debian; .ci/run installs it)")
    return found


def run_promtool(*args: str) -> str:
    checked = subprocess.run(
        [promtool(), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return checked.stdout + checked.stderr


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules_and_the_compose_config() -> None:
    """Syntax, PromQL and templates of the rules, and the config compose mounts, as Prometheus reads them."""
    assert f"SUCCESS: {len(alert_rules())} rules found" in run_promtool("check", "rules", ALERTS.name)
    assert "is valid prometheus config file syntax" in run_promtool("check", "config", "prometheus.yml")


def test_every_alert_passes_its_promtool_unit_tests() -> None:
    """Each alert fires where it should, stays quiet where it should, and waits exactly its `for:`."""
    assert "SUCCESS" in run_promtool("test", "rules", ALERT_TESTS.name)


def test_every_alert_has_a_firing_a_quiet_and_a_for_boundary_case() -> None:
    """A new alert without its three cases fails here, not in production."""
    suite = yaml.safe_load(ALERT_TESTS.read_text())
    step = parse_duration(suite["evaluation_interval"])
    cases: dict[str, dict[str, set[str]]] = {}
    for test in suite["tests"]:
        checks: dict[str, dict[float, bool]] = {}
        for check in test.get("alert_rule_test", []):
            checks.setdefault(check["alertname"], {})[parse_duration(check["eval_time"])] = bool(
                check["exp_alerts"]
            )
        for name, by_time in checks.items():
            kinds = cases.setdefault(name, {"fires": set(), "quiet": set(), "boundary": set()})
            if any(by_time.values()):
                kinds["fires"].add(test["name"])
            else:
                kinds["quiet"].add(test["name"])
            if any(fires and by_time.get(at - step) is False for at, fires in by_time.items()):
                kinds["boundary"].add(test["name"])
    for rule in alert_rules():
        found = cases.get(rule["alert"], {})
        missing = [kind for kind in ("fires", "quiet", "boundary") if not found.get(kind)]
        assert not missing, f"{rule['alert']} has no {missing} case in {ALERT_TESTS.name}"


def test_alerts_follow_the_community_conventions() -> None:
    """CamelCase names, a severity, summary, description and a runbook section that exists."""
    anchors = {github_anchor(line.lstrip("#").strip()) for line in RUNBOOK.read_text().splitlines()
               if line.startswith("## ")}  # fmt: skip
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"Eventapi(?:[A-Z][a-z0-9]+)+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert (page, anchor) == ("docs/runbook.md", name.lower()) and anchor in anchors, name
        assert 'job="eventapi"' in rule["expr"], f"{name} must read the scrape job eventapi"


def test_the_compose_prometheus_scrapes_both_instances_as_job_eventapi() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == "eventapi"
    assert job["static_configs"] == [{"targets": ["api-1:8000", "api-2:8000"]}]
    assert config["rule_files"] == [ALERTS.name]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, spaces to dashes, punctuation dropped."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as `1m`, `90s` or `1h30m`."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", text)
    assert parts and "".join(f"{n}{u}" for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(int(number) * units[unit] for number, unit in parts)
