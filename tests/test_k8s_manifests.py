"""deploy/k8s: every overlay renders, passes strict schema validation, and agrees with the service."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes_validate.utils import latest_version

from eventapi.cli import DRAIN_SECONDS
from eventapi.settings import Settings
from tests.support.workers import worker

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("redis-statefulset", "external-redis", "podman")
# matchLabelKeys in topologySpreadConstraints is on by default from 1.27 (beta); older clusters
# drop the field silently, so the manifests claim 1.27 as the oldest version they are made for.
OLDEST_KUBERNETES = "1.27.0"
NEWEST_KUBERNETES = f"{latest_version()}.0"
KUBECTL = shutil.which("kubectl")
# Settings the ConfigMap leaves out on purpose (deploy/k8s/base/settings.env says why).
NOT_IN_CONFIGMAP = {
    "EVENTAPI_REDIS_URL": "carries the password: from the Secret",
    "EVENTAPI_REDIS_REPLICA_URL": "carries the password: from a Secret when used",
    "EVENTAPI_REDIS_SENTINEL_PASSWORD": "a password: from a Secret when Sentinel is used",
    "EVENTAPI_SNAPSHOT_PATH": "the embedded store only",
    "EVENTAPI_REFRESH_LOCK_TTL": "derived from the provider timeout unless overridden",
}
INTERNAL_PATHS = ("/metrics", "/status", "/healthz", "/readyz")

pytestmark = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl is not on PATH: these tests render deploy/k8s with `kubectl kustomize`; install "
    "kubectl 1.27 or newer (it bundles Kustomize), e.g. from the Kubernetes apt repository: "
    "https://kubernetes.io/docs/tasks/tools/install-kubectl-linux/",
)


@cache
def render(overlay: str) -> str:
    """`kubectl kustomize` of one overlay, as YAML text."""
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(overlay: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render(overlay)) if doc]


def one(overlay: str, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects(overlay) if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{overlay}: {len(found)} {kind} named {name}"
    return found[0]


def api(overlay: str) -> dict[str, Any]:
    """The API's Deployment."""
    return one(overlay, "Deployment", "eventapi")


def api_container(overlay: str) -> dict[str, Any]:
    containers = {c["name"]: c for c in api(overlay)["spec"]["template"]["spec"]["containers"]}
    return containers["api"]


def settings_configmap(overlay: str) -> dict[str, str]:
    data: dict[str, str] = one(overlay, "ConfigMap")["data"]
    return data


def secret_value(overlay: str, key: str) -> str:
    return base64.b64decode(one(overlay, "Secret")["data"][key]).decode()


def pod_templates(overlay: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects(overlay):
        if o["kind"] in ("Deployment", "StatefulSet"):
            yield o["metadata"]["name"], o["spec"]["template"]


def validate(manifests: Path, version: str) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run(
        [str(tool), "--strict", "--kubernetes-version", version, str(manifests)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


# --- rendered and validated --------------------------------------------------------------------


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_passes_strict_validation(overlay: str, version: str, tmp_path: Path) -> None:
    """Every object is a known kind whose fields exist in that version; a warning counts as a failure."""
    manifests = tmp_path / f"{overlay}.yaml"
    manifests.write_text(render(overlay))
    result = validate(manifests, version)
    lines = (result.stdout + result.stderr).strip().splitlines()
    passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
    assert result.returncode == 0 and len(passed) == len(objects(overlay)) == len(lines), "\n".join(lines)


def test_strict_validation_rejects_a_misspelt_field(tmp_path: Path) -> None:
    """The validation above would catch a typo that Kubernetes would otherwise drop silently."""
    manifests = tmp_path / "typo.yaml"
    manifests.write_text(
        render("external-redis").replace("readOnlyRootFilesystem:", "readOnlyRootFileSystem:")
    )
    result = validate(manifests, NEWEST_KUBERNETES)
    assert result.returncode != 0 and "readOnlyRootFileSystem" in result.stdout + result.stderr


def test_each_overlay_renders_the_objects_it_promises() -> None:
    kinds = {overlay: sorted(o["kind"] for o in objects(overlay)) for overlay in OVERLAYS}
    base = ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy",
            "PodDisruptionBudget", "Secret", "Service"]  # fmt: skip
    assert kinds["external-redis"] == base
    assert kinds["podman"] == base
    assert kinds["redis-statefulset"] == sorted([*base, "NetworkPolicy", "Service", "StatefulSet"])


# --- consistent with each other and with the service -------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_agree_across_deployment_service_budget_and_policy(overlay: str) -> None:
    """A selector that matches nothing is valid YAML and an empty Service: compare them all."""
    deployment = api(overlay)
    labels = deployment["spec"]["selector"]["matchLabels"]
    template = deployment["spec"]["template"]
    assert labels.items() <= template["metadata"]["labels"].items()
    assert one(overlay, "Service", "eventapi")["spec"]["selector"] == labels
    assert one(overlay, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == labels
    assert one(overlay, "NetworkPolicy", "eventapi")["spec"]["podSelector"]["matchLabels"] == labels
    for spread in template["spec"]["topologySpreadConstraints"]:
        assert spread["labelSelector"]["matchLabels"] == labels
    assert one(overlay, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]
    }  # fmt: skip


def test_redis_accepts_the_api_pods_only_and_its_service_selects_it() -> None:
    overlay = "redis-statefulset"
    redis = one(overlay, "StatefulSet")
    labels = redis["spec"]["selector"]["matchLabels"]
    assert labels.items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    assert one(overlay, "Service", "eventapi-redis")["spec"]["selector"] == labels
    policy = one(overlay, "NetworkPolicy", "eventapi-redis")["spec"]
    assert policy["podSelector"]["matchLabels"] == labels and policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": api(overlay)["spec"]["selector"]["matchLabels"]}}]
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_http_probe_asks_a_route_the_app_serves(overlay: str) -> None:
    """Readiness on /readyz (can it answer searches); startup and liveness on /healthz (never the store)."""
    routes = worker().app.routes
    container = api_container(overlay)
    paths = {kind: container[kind].get("httpGet", {}).get("path") for kind in
             ("startupProbe", "livenessProbe", "readinessProbe")}  # fmt: skip
    assert paths["readinessProbe"] == "/readyz" and paths["startupProbe"] == "/healthz"
    assert paths["livenessProbe"] in ("/healthz", None)
    for path in filter(None, paths.values()):
        assert path in routes
    if paths["livenessProbe"] is None:  # podman: exec, the command that asks /healthz
        assert container["livenessProbe"]["exec"]["command"] == ["eventapi", "healthcheck"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if "httpGet" in container[kind]:
            assert container[kind]["httpGet"]["port"] in ports


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_holds_real_settings_only_and_every_one_left_out_is_named(overlay: str) -> None:
    """A misspelt EVENTAPI_ name is ignored by the service; a new setting must be decided on here."""
    settings = set(Settings().to_environ())
    configmap = settings_configmap(overlay)
    assert set(configmap) <= settings, set(configmap) - settings
    assert settings - set(configmap) == set(NOT_IN_CONFIGMAP)
    Settings.from_env(configmap)  # every value is valid: SettingsError otherwise
    environment = {e["name"] for e in api_container(overlay)["env"] if e["name"].startswith("EVENTAPI_")}
    assert environment <= settings, environment - settings


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_port_is_eventapi_port_everywhere_it_is_named(overlay: str) -> None:
    port = int(settings_configmap(overlay)["EVENTAPI_PORT"])
    assert settings_configmap(overlay)["EVENTAPI_HOST"] == "0.0.0.0"
    container = api_container(overlay)
    [http] = container["ports"]
    assert (http["name"], http["containerPort"]) == ("http", port)
    assert one(overlay, "Service", "eventapi")["spec"]["ports"][0]["targetPort"] == "http"
    assert one(overlay, "NetworkPolicy", "eventapi")["spec"]["ingress"] == [
        {"ports": [{"port": port, "protocol": "TCP"}]}
    ]
    annotations = api(overlay)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/path"] == "/metrics"
    assert "/metrics" in worker().app.routes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prestop_sleep_plus_drain_fits_in_the_grace_period(overlay: str) -> None:
    """Past the grace period the kubelet kills the pod mid-request."""
    spec = api(overlay)["spec"]["template"]["spec"]
    command = api_container(overlay)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    assert int(command[1]) + DRAIN_SECONDS < spec["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_follow_the_restricted_security_profile_as_the_images_user(overlay: str) -> None:
    containerfile = (REPO / "Containerfile").read_text()
    [user] = re.findall(r"^USER (\d+)(?::\d+)?$", containerfile, re.MULTILINE)
    deployment = api(overlay)["spec"]["template"]["spec"]
    assert deployment["securityContext"]["runAsUser"] == int(user) != 0
    assert deployment["enableServiceLinks"] is False  # no EVENTAPI_PORT=tcp://... from the Service
    assert deployment["automountServiceAccountToken"] is False
    for name, template in pod_templates(overlay):
        pod = template["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in template["spec"]["containers"]:
            context = container["securityContext"]
            assert context == {
                "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }, (name, container["name"])  # fmt: skip
            assert "memory" in container["resources"]["limits"], (name, container["name"])
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), (name, container["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_what_the_service_writes_goes_to_emptydirs(overlay: str) -> None:
    """The root filesystem is read-only: /tmp and the metrics directory must be volumes."""
    container = api_container(overlay)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in api(overlay)["spec"]["template"]["spec"]["volumes"]}
    for path in ("/tmp", settings_configmap(overlay)["EVENTAPI_METRICS_DIR"]):
        assert "emptyDir" in volumes[mounts[path]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_autoscaler_owns_the_replica_count(overlay: str) -> None:
    assert "replicas" not in api(overlay)["spec"]
    hpa = one(overlay, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
    assert one(overlay, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1, "selector": api(overlay)["spec"]["selector"]
    }  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_routes_public_paths_only(overlay: str) -> None:
    """/metrics and /status stay inside the cluster: no Ingress path reaches them."""
    app = worker().app
    public = [*app.routes, *app.prefix_routes]
    for rule in one(overlay, "Ingress")["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"] == {"name": "eventapi", "port": {"name": "http"}}
            prefix, exact = path["path"], path["pathType"] == "Exact"
            reaches = [
                p for p in public if p == prefix or (not exact and p.startswith(prefix.rstrip("/") + "/"))
            ]
            assert reaches, f"{prefix} routes to nothing the app serves"
            for internal in INTERNAL_PATHS:
                assert internal != prefix and (exact or not internal.startswith(prefix.rstrip("/") + "/"))


def test_statefulset_redis_requires_the_password_of_the_apis_url() -> None:
    overlay = "redis-statefulset"
    password = secret_value(overlay, "password")
    assert urlsplit(secret_value(overlay, "url")).password == password
    [redis] = one(overlay, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert redis["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"] and "--appendonly" in redis["args"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in redis["env"]}
    assert env["REDIS_PASSWORD"] == {"name": one(overlay, "Secret")["metadata"]["name"], "key": "password"}
    claim = one(overlay, "StatefulSet")["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert {"name": claim, "mountPath": "/data"} in redis["volumeMounts"]


def test_podman_redis_requires_the_password_of_the_apis_url() -> None:
    overlay = "podman"
    containers = {c["name"]: c for c in api(overlay)["spec"]["template"]["spec"]["containers"]}
    assert urlsplit(secret_value(overlay, "url")).password == secret_value(overlay, "password")
    assert '--requirepass "$REDIS_PASSWORD"' in containers["redis"]["command"][-1]


def test_external_redis_url_carries_a_password() -> None:
    assert urlsplit(secret_value("external-redis", "url")).password


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_redis_url_comes_from_the_secret_never_the_configmap(overlay: str) -> None:
    [url] = [e for e in api_container(overlay)["env"] if e["name"] == "EVENTAPI_REDIS_URL"]
    assert url["valueFrom"]["secretKeyRef"] == {
        "name": one(overlay, "Secret")["metadata"]["name"],
        "key": "url",
    }


def test_prometheus_scrape_job_is_eventapi_and_reads_the_pod_annotations() -> None:
    config = yaml.safe_load((K8S / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == "eventapi"
    sources = {label for rule in job["relabel_configs"] for label in rule["source_labels"]}
    for annotation in api("external-redis")["spec"]["template"]["metadata"]["annotations"]:
        assert "__meta_kubernetes_pod_annotation_" + re.sub(r"[./]", "_", annotation) in sources
