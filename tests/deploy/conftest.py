"""The chart tests' tools (helm, kubernetes-validate) as fixtures for every module here."""

from tests.deploy.test_helm_chart import helm, kube_version, kv  # noqa: F401 (fixtures)
