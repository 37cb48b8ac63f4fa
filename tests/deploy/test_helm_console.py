"""The chart's optional operator console: off by default; when on, a Deployment of
`jobstream ui` and a Service, credentials only from the referenced Secret, the same pod
security as the workers, manifests valid for Kubernetes."""

from __future__ import annotations

from typing import Any

import yaml

from tests.deploy.test_helm_chart import by_kind, render, template

ON = ["--set", "console.enabled=true", "--set", "console.authSecret=console-auth",
      "--set", "console.tokensKey=tokens",
      "--set-json", 'console.workers=["http://w-0.w:9400/metrics","http://w-1.w:9400/metrics"]']


def _console(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith("-console")]


def test_off_by_default(helm: str, kube_version: str) -> None:
    docs = render(helm, kube_version)
    assert not _console(docs, "Deployment") and not _console(docs, "Service")


def test_console_deployment_and_service(helm: str, kube_version: str, kv: Any) -> None:
    docs = render(helm, kube_version, *ON)
    (dep,) = _console(docs, "Deployment")
    (svc,) = _console(docs, "Service")
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["args"] == ["ui", "--host", "0.0.0.0", "--port", "8400"]
    assert c["ports"] == [{"name": "http", "containerPort": 8400, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = {e["name"]: e for e in c["env"]}
    assert env["JOBSTREAM_UI__AUTH__PASSWORDS"]["valueFrom"]["secretKeyRef"] == {
        "name": "console-auth", "key": "passwords"}
    assert env["JOBSTREAM_UI__AUTH__TOKENS"]["valueFrom"]["secretKeyRef"] == {
        "name": "console-auth", "key": "tokens"}
    assert yaml.safe_load(env["JOBSTREAM_UI__WORKERS"]["value"]) == [
        "http://w-0.w:9400/metrics", "http://w-1.w:9400/metrics"]
    assert env["JOBSTREAM_CONFIG"]["value"] == "/etc/jobstream/config/config.yaml"
    # The same hardening as the workers: non-root, read-only root, no privileges.
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert dep["spec"]["replicas"] == 1
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert labels["app.kubernetes.io/component"] == "console"
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    # The worker Service and Deployment never select the console pod.
    worker = next(d for d in by_kind(docs, "Deployment") if d is not dep)
    assert worker["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    kubernetes_validate = kv[0]
    for doc in (dep, svc):
        kubernetes_validate.validate(doc, kube_version, strict=True)


def test_read_only_without_a_secret(helm: str, kube_version: str) -> None:
    docs = render(helm, kube_version, "--set", "console.enabled=true")
    (dep,) = _console(docs, "Deployment")
    names = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not {n for n in names if n.startswith("JOBSTREAM_UI__AUTH")}


def test_bad_console_values_are_rejected(helm: str, kube_version: str) -> None:
    for bad in (["--set", "console.port=0"], ["--set", "console.enabled=yes-please"],
                ["--set-json", 'console.workers=["worker-0:9400"]'],
                ["--set", "console.password=oops"]):
        proc = template(helm, kube_version, *bad)
        assert proc.returncode != 0, bad
        assert "console" in proc.stderr, proc.stderr
