"""Where job schemas come from: only the directories in `schema_dirs`. The product ships no job
types of its own; the demo's schemas live with the demo, in examples/schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples import demo
from jobstream.config.settings import load_settings
from jobstream.schemas.registry import SchemaRegistry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SCHEMAS = ROOT / "examples" / "schemas"
DEMO_TYPES = ["billing.reconcile", "media.thumbnail", "orders.confirmation", "reports.generate"]


def test_no_job_type_is_built_in() -> None:
    """Issue 26 item 20: the demo's three job types were built into every registry, so
    `topics apply` and the Helm pre-install hook created their topics in every cluster. A
    registry now knows only what its schema directories hold."""
    assert SchemaRegistry.from_dirs().job_types() == []


def test_a_service_can_define_the_readmes_example_type(tmp_path: Path) -> None:
    """Issue 26 item 20: a service defining `orders.confirmation`, the README's own example,
    failed with "defined twice and differently" against the built-in demo schema."""
    d = tmp_path / "orders.confirmation"
    d.mkdir()
    raw = {"type": "record", "name": "Confirm", "namespace": "shop", "doc": "d",
           "fields": [{"name": "order", "type": "string", "doc": "d"}]}
    (d / "v1.avsc").write_text(json.dumps(raw))
    reg = SchemaRegistry.from_dirs([tmp_path])
    assert reg.job_types() == ["orders.confirmation"]
    assert reg.latest("orders.confirmation").raw == raw


def test_the_demo_brings_its_own_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make demo` adds examples/schemas to whatever schema dirs are set, for itself and for
    the worker it starts."""
    monkeypatch.delenv("JOBSTREAM_CONFIG", raising=False)
    monkeypatch.setenv("JOBSTREAM_SCHEMA_DIRS", json.dumps([str(ROOT / "tests" / "schemas")]))
    settings = demo.demo_settings()
    assert SchemaRegistry.from_dirs(settings.schema_dirs).job_types() == sorted(
        [*DEMO_TYPES, *(d.name for d in (ROOT / "tests" / "schemas").iterdir() if d.is_dir())]
    )
    monkeypatch.setenv("JOBSTREAM_SCHEMA_DIRS", demo.worker_env(settings)["JOBSTREAM_SCHEMA_DIRS"])
    assert load_settings().schema_dirs == settings.schema_dirs
    assert SchemaRegistry.from_dirs([EXAMPLE_SCHEMAS]).job_types() == DEMO_TYPES
