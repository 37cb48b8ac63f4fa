"""Chart checks: helm lint, helm template, schema validation of every rendered manifest.

Tools (never skipped: a missing tool is a failure, with the fix in the message):
- helm: built once by scripts/install-helm.sh into ${JOBSTREAM_CACHE:-~/.cache/jobstream}/bin.
- kubernetes-validate (PyPI): Kubernetes OpenAPI schemas per version, offline.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "jobstream"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
INSTALL_HELM = ROOT / "scripts" / "install-helm.sh"

# Kinds from CRDs (Prometheus Operator, KEDA) that kubernetes-validate has no schema for;
# they get a structural check instead: apiVersion, kind and the keys their operators need.
CRD_REQUIRED: dict[tuple[str, str], list[str]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ["spec.selector", "spec.endpoints"],
    ("monitoring.coreos.com/v1", "PrometheusRule"): ["spec.groups"],
    ("keda.sh/v1alpha1", "ScaledObject"): ["spec.scaleTargetRef.name", "spec.triggers"],
    ("keda.sh/v1alpha1", "TriggerAuthentication"): ["spec"],
}

CONTRACT_METRICS = [
    "jobstream_jobs_total",
    "jobstream_job_duration_seconds",
    "jobstream_job_latency_seconds",
    "jobstream_retries_total",
    "jobstream_consumer_lag",
    "jobstream_in_flight",
    "jobstream_ledger_entries",
    "jobstream_rebalances_total",
]


# ---------------------------------------------------------------- tools


def _cache_dir() -> Path:
    return Path(os.environ.get("JOBSTREAM_CACHE") or Path.home() / ".cache" / "jobstream")


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary; built by scripts/install-helm.sh if missing (idempotent, cached)."""
    try:
        proc = subprocess.run(
            ["bash", str(INSTALL_HELM)], capture_output=True, text=True, timeout=1800, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"{INSTALL_HELM} did not finish within 30 minutes (building helm with go install)"
        )
    lines = proc.stdout.strip().splitlines()
    path = lines[-1] if lines else ""
    if proc.returncode != 0 or not path or not os.access(path, os.X_OK):
        pytest.fail(
            f"helm is required and could not be installed by {INSTALL_HELM} "
            f"(exit {proc.returncode}; needs a Go toolchain and the Go module proxy).\n"
            f"stdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-4000:]}"
        )
    assert Path(path) == _cache_dir() / "bin" / "helm", path
    return path


@pytest.fixture(scope="session")
def kv() -> Any:
    try:
        import kubernetes_validate
        import kubernetes_validate.utils as kv_utils
    except ImportError as e:  # pragma: no cover - environment problem, reported loudly
        pytest.fail(
            f"kubernetes-validate is required: pip install 'kubernetes-validate==1.37.0' ({e})"
        )
    return kubernetes_validate, kv_utils


@pytest.fixture(scope="session")
def kube_version(kv: Any) -> str:
    """The newest Kubernetes version kubernetes-validate ships schemas for (e.g. 1.37.0)."""
    return str(kv[1].latest_version())


# ---------------------------------------------------------------- rendering


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def template(helm: str, kube_version: str, *extra: str) -> subprocess.CompletedProcess[str]:
    # --kube-version: a helm built with `go install` defaults to an old Kubernetes version
    # (no release ldflags), which the chart's kubeVersion constraint rejects.
    return run_helm(
        helm,
        "template",
        "rel",
        str(CHART),
        "--namespace",
        "jobs",
        "--kube-version",
        kube_version,
        *extra,
    )


def render(helm: str, kube_version: str, *extra: str) -> list[dict[str, Any]]:
    proc = template(helm, kube_version, *extra)
    assert proc.returncode == 0, f"helm template {' '.join(extra)} failed:\n{proc.stderr}"
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert docs, "helm template rendered nothing"
    return docs


SCENARIOS = {"default": [], "full": ["-f", str(FULL_VALUES)]}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(
    request: pytest.FixtureRequest, helm: str, kube_version: str
) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(helm, kube_version, *SCENARIOS[request.param])


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, (
        f"expected one {kind} named *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def dig(doc: dict[str, Any], dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        assert isinstance(cur, dict) and part in cur, f"{doc.get('kind')}: missing {dotted}"
        cur = cur[part]
    return cur


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = [
        (f"Deployment/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in by_kind(docs, "Deployment")
    ]
    specs += [
        (f"Job/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in by_kind(docs, "Job")
    ]
    return specs


# ---------------------------------------------------------------- lint and schema


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_helm_lint_strict(helm: str, kube_version: str, name: str) -> None:
    proc = run_helm(
        helm, "lint", "--strict", str(CHART), "--kube-version", kube_version, *SCENARIOS[name]
    )
    assert proc.returncode == 0, f"helm lint ({name}) failed:\n{proc.stdout}\n{proc.stderr}"


def test_full_values_turn_every_optional_feature_on() -> None:
    v = yaml.safe_load(FULL_VALUES.read_text())
    assert v["keda"]["enabled"] is True and v["hpa"]["enabled"] is False
    for key in ("metrics.serviceMonitor", "prometheusRule", "grafanaDashboard", "pdb", "topicsJob"):
        assert dig(v, key)["enabled"] is True, key


def test_every_manifest_validates(
    scenario: tuple[str, list[dict[str, Any]]], kv: Any, kube_version: str
) -> None:
    name, docs = scenario
    kubernetes_validate = kv[0]
    errors = []
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        ident = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if key in CRD_REQUIRED:
            assert doc["metadata"].get("name"), ident
            for dotted in CRD_REQUIRED[key]:
                assert dig(doc, dotted), f"{ident}: {dotted} is empty"
            continue
        try:
            # strict: unknown fields (typos such as `readinesProbe`) are errors too.
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{ident}: {e.message} at {'/'.join(map(str, e.path))}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(
                f"{ident}: no schema ({e.message}); a CRD kind must be listed in CRD_REQUIRED"
            )
    assert not errors, f"[{name}] invalid manifests:\n" + "\n".join(errors)


def test_expected_resources(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = scenario
    kinds = sorted({d["kind"] for d in docs})
    base = {"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service", "ServiceAccount"}
    assert base <= set(kinds), kinds
    if name == "default":
        # Optional features are off by default (and need CRDs that a cluster may not have).
        assert not set(kinds) & {
            "ServiceMonitor",
            "PrometheusRule",
            "ScaledObject",
            "HorizontalPodAutoscaler",
        }
        assert len(by_kind(docs, "ConfigMap")) == 2  # settings + the hook's copy
    else:
        assert {"ServiceMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"} <= set(
            kinds
        )
        assert "HorizontalPodAutoscaler" not in kinds
        dash = one(docs, "ConfigMap", "-dashboard")
        assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"


# ---------------------------------------------------------------- workload settings


def test_pod_security(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = scenario
    specs = pod_specs(docs)
    assert len(specs) == 2  # worker Deployment + topics hook Job
    for ident, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, ident
        assert psc["runAsUser"] == 10001, ident
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", ident
        assert spec["automountServiceAccountToken"] is False, ident
        assert spec["enableServiceLinks"] is False, ident
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, ident
            assert sc["runAsUser"] == 10001, ident
            assert sc["readOnlyRootFilesystem"] is True, ident
            assert sc["allowPrivilegeEscalation"] is False, ident
            assert sc["capabilities"]["drop"] == ["ALL"], ident
            assert "add" not in sc["capabilities"], ident
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", ident
            assert c.get("resources", {}).get("requests"), f"{ident}: no resource requests"
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts, f"{ident}: no writable /tmp"
        vols = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in vols["tmp"], ident


def test_probes_and_ports(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = scenario
    dep = one(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 9400}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = {e["name"]: e for e in c["env"]}
    # The app binds 127.0.0.1 by default; in a pod it must listen on all interfaces.
    assert env["JOBSTREAM_WORKER__HTTP_HOST"]["value"] == "0.0.0.0"
    assert env["JOBSTREAM_WORKER__HTTP_PORT"]["value"] == "9400"
    svc = one(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert c["args"] == ["worker"]


@pytest.mark.parametrize("grace", [0, 30, 45.5, 600])
def test_termination_grace_exceeds_shutdown_grace(
    helm: str, kube_version: str, grace: float
) -> None:
    # --set-json: plain --set turns 45.5 into a string.
    docs = render(helm, kube_version, "--set-json", f"worker.shutdownGraceSeconds={grace}")
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert isinstance(spec["terminationGracePeriodSeconds"], int)
    assert spec["terminationGracePeriodSeconds"] > grace
    cfg = yaml.safe_load(one(docs, "ConfigMap", "rel-jobstream")["data"]["config.yaml"])
    assert cfg["worker"]["shutdown_grace_s"] == grace


def test_config_and_secrets(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = scenario
    cm = one(docs, "ConfigMap", "rel-jobstream")
    cfg = yaml.safe_load(cm["data"]["config.yaml"])
    assert set(cfg) <= {"kafka", "worker", "log", "jobs", "schema_dirs", "app"}, cfg
    assert cfg["kafka"]["bootstrap_servers"]
    assert cfg["worker"]["group_id"]
    assert "sasl_password" not in cfg["kafka"] and "ssl_key_password" not in cfg["kafka"]
    # The hook gets the same settings through its own (hook-managed) ConfigMap.
    hook_cm = one(docs, "ConfigMap", "-topics")
    assert hook_cm["data"] == cm["data"]

    for ident, spec in pod_specs(docs):
        (c,) = spec["containers"]
        env = {e["name"]: e for e in c["env"]}
        cfg_path = env["JOBSTREAM_CONFIG"]["value"]
        mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
        assert cfg_path == f"{mount['mountPath']}/config.yaml", ident
        assert env["JOBSTREAM_APP"]["value"]
        for e in c["env"]:
            assert "PASSWORD" not in e["name"] or "valueFrom" in e, (
                f"{ident}: {e['name']} must come from a Secret"
            )
        if name == "full":
            ref = env["JOBSTREAM_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "jobstream-kafka-sasl", "key": "password"}
            assert (
                env["JOBSTREAM_KAFKA__SSL_KEY_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
                == "jobstream-kafka-tls"
            )
            tls = next(v for v in spec["volumes"] if v["name"] == "kafka-tls")
            assert tls["secret"]["secretName"] == "jobstream-kafka-tls"
            tls_mount = next(m for m in c["volumeMounts"] if m["name"] == "kafka-tls")
            assert cfg["kafka"]["ssl_ca_location"] == f"{tls_mount['mountPath']}/ca.crt"
            assert cfg["kafka"]["security_protocol"] == "SASL_SSL"


def test_topics_hook(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = scenario
    job = one(docs, "Job", "-topics")
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["topics", "apply"]
    assert (
        c["image"] == one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    cm = one(docs, "ConfigMap", "-topics")
    # The hook's ConfigMap must exist before the Job: a lower hook weight is created first.
    assert int(cm["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        ann["helm.sh/hook-weight"]
    )
    assert cm["metadata"]["annotations"]["helm.sh/hook"] == ann["helm.sh/hook"]


def test_replicas_left_to_autoscaler(helm: str, kube_version: str) -> None:
    assert one(render(helm, kube_version), "Deployment")["spec"]["replicas"] == 2
    full = render(helm, kube_version, "-f", str(FULL_VALUES))
    assert "replicas" not in one(full, "Deployment")["spec"]
    hpa = render(helm, kube_version, "--set", "hpa.enabled=true")
    assert "replicas" not in one(hpa, "Deployment")["spec"]
    assert one(hpa, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "rel-jobstream"


# ---------------------------------------------------------------- autoscaling


def test_keda_scaledobject(helm: str, kube_version: str) -> None:
    docs = render(helm, kube_version, "-f", str(FULL_VALUES))
    so = one(docs, "ScaledObject")
    assert so["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    triggers = so["spec"]["triggers"]
    # One trigger per main topic of the configured job types (retry topics excluded).
    assert sorted(t["metadata"]["topic"] for t in triggers) == [
        "jobs.orders.confirmation",
        "mail.outbound",
    ]
    for t in triggers:
        assert t["type"] == "kafka"
        md = t["metadata"]
        assert md["bootstrapServers"] == "kafka-0.kafka:9093,kafka-1.kafka:9093"
        assert md["consumerGroup"] == "jobstream-ci"
        assert md["lagThreshold"] == "200"
        assert all(isinstance(v, str) for v in md.values()), md
        assert md["sasl"] == "scram_sha512" and md["tls"] == "enable"
        assert (
            t["authenticationRef"]["name"] == one(docs, "TriggerAuthentication")["metadata"]["name"]
        )
    refs = {
        r["parameter"]: r for r in one(docs, "TriggerAuthentication")["spec"]["secretTargetRef"]
    }
    assert set(refs) == {"username", "password", "ca", "cert", "key", "keyPassword"}


def test_worker_processes_follow_the_cpu_request(helm: str, kube_version: str) -> None:
    """Issue 29: by default one worker process per CPU of the container's request (the Downward
    API rounds 100m up to 1); a number or `auto` is passed as it is."""

    def env(*extra: str) -> dict[str, Any]:
        pod = one(render(helm, kube_version, *extra), "Deployment")["spec"]["template"]["spec"]
        worker = next(c for c in pod["containers"] if c["args"] == ["worker"])
        return {e["name"]: e for e in worker["env"]}["JOBSTREAM_WORKER__PROCESSES"]

    ref = env()["valueFrom"]["resourceFieldRef"]
    assert ref == {"resource": "requests.cpu", "divisor": "1"}
    assert env("--set", "worker.processes=3")["value"] == "3"
    assert env("--set", "worker.processes=auto")["value"] == "auto"


def test_keda_and_hpa_are_exclusive(helm: str, kube_version: str) -> None:
    proc = template(helm, kube_version, "--set", "keda.enabled=true", "--set", "hpa.enabled=true")
    assert proc.returncode != 0
    assert "keda.enabled and hpa.enabled are mutually exclusive" in proc.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["kafka.securityProtocol=SASL_SSL"], "kafka.sasl.existingSecret"),
        (["worker.mode=exactly_once"], "/worker/mode"),
        (["securityContext.readOnlyRootFilesystem=false"], "readOnlyRootFilesystem"),
        (["podSecurityContext.runAsNonRoot=false"], "runAsNonRoot"),
        (["kafka.securityProtocol=PLAIN"], "securityProtocol"),
        (["replicas=3"], "replicas"),  # typo of replicaCount: unknown keys are rejected
        (["worker.terminationGraceMarginSeconds=0"], "terminationGraceMarginSeconds"),
        (["worker.processes=0"], "/worker/processes"),
        (["worker.processes=many"], "/worker/processes"),
    ],
)
def test_bad_values_are_rejected(
    helm: str, kube_version: str, sets: list[str], message: str
) -> None:
    args = [a for s in sets for a in ("--set", s)]
    proc = template(helm, kube_version, *args)
    assert proc.returncode != 0, f"{sets} should fail"
    assert message in proc.stderr, proc.stderr


# ---------------------------------------------------------------- observability files


def test_alert_rules_single_source(helm: str, kube_version: str) -> None:
    raw = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    rules = {r["alert"]: r for g in raw["groups"] for r in g["rules"]}
    assert set(rules) == {
        "JobstreamConsumerLagGrowing",
        "JobstreamDeadLetterRatioHigh",
        "JobstreamNoProgress",
        "JobstreamRebalanceStorm",
    }
    assert 'outcome="dead_lettered"' in rules["JobstreamDeadLetterRatioHigh"]["expr"]
    assert "jobstream_rebalances_total" in rules["JobstreamRebalanceStorm"]["expr"]
    assert "jobstream_consumer_lag" in rules["JobstreamNoProgress"]["expr"]
    assert "jobstream_jobs_total" in rules["JobstreamNoProgress"]["expr"]
    for r in rules.values():
        assert r["labels"]["severity"] in {"warning", "critical"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        assert r["expr"].count("(") == r["expr"].count(")"), r["alert"]
    docs = render(helm, kube_version, "--set", "prometheusRule.enabled=true")
    assert one(docs, "PrometheusRule")["spec"] == raw


def test_dashboard_single_source(helm: str, kube_version: str) -> None:
    text = (CHART / "files" / "dashboard.json").read_text()
    dash = json.loads(text)
    assert dash["uid"] and dash["panels"]
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    for metric in CONTRACT_METRICS:
        assert metric in exprs, f"dashboard has no panel for {metric}"
    docs = render(helm, kube_version, "--set", "grafanaDashboard.enabled=true")
    cm = one(docs, "ConfigMap", "-dashboard")
    assert json.loads(cm["data"]["jobstream.json"]) == dash


def test_schema_dirs_default_to_the_demo_and_are_replaced_by_a_service(
    helm: str, kube_version: str
) -> None:
    """Issue 26 item 20: the demo's schemas were built into jobstream, so the topics hook
    created the demo's topics in every cluster. They now live with the demo: the chart's
    default app is the demo, so its default schemaDirs is the demo's directory in the image
    (the Dockerfile copies examples/ to /app/examples); a service's schemaDirs replaces it."""

    def schema_dirs(*extra: str) -> Any:
        cm = one(render(helm, kube_version, *extra), "ConfigMap", "rel-jobstream")
        return yaml.safe_load(cm["data"]["config.yaml"]).get("schema_dirs")

    assert schema_dirs() == ["/app/examples/schemas"]
    assert (ROOT / "examples" / "schemas" / "orders.confirmation").is_dir()
    own = ["--set", "app=shop.jobs", "--set-json", 'schemaDirs=["/app/shop/schemas"]']
    assert schema_dirs(*own) == ["/app/shop/schemas"]
