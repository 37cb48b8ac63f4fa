"""`jobstream audit verify <job_type>` (issue 21) walks each T.history partition's chains, one
per writer's stream, on a real broker: intact interleaved streams pass, and a record removed,
changed or reordered fails with its offset (exit 1). `--since` starts mid-chain and says so."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from jobstream.schemas import history
from tests.support.harness import Stack, run_cli

POLICY = history.Policy((1.0,), 2, 5.0)


def _rec(job_id: str, n: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return history.attempt(job_id=job_id, job_type="test.echo", attempt=n, worker="w",
                           started_at=now, finished_at=now, outcome="succeeded", policy=POLICY,
                           source=("t", 0, n))


def _sealed(stream: str, count: int) -> list[bytes]:
    prev, out = "0" * 64, []
    for i in range(count):
        value, prev = history.encode(_rec(f"{stream}-{i}", 1), prev, stream)
        out.append(value)
    return out


@pytest.fixture
def stack(stack_factory: Any) -> Stack:
    """Its workers are stopped and its topics deleted at the end (conftest.py)."""
    s: Stack = stack_factory()
    return s


def _verify(stack: Stack, *args: str) -> tuple[int, dict[str, Any]]:
    res = run_cli("audit", "verify", "test.echo", "--json", *args,
                  env={"JOBSTREAM_CONFIG": str(stack.config_path)})
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)


def test_intact_streams_pass_and_each_kind_of_tampering_fails(stack: Stack) -> None:
    topic = stack.topics.history
    a, b = _sealed("main:0", 4), _sealed("retry:0", 3)
    interleaved = [a[0], b[0], a[1], b[1], a[2], b[2], a[3]]
    stack.produce_raw([(0, b"k", v, []) for v in interleaved], topic=topic)
    # partition 1: a record removed (c[1] never written); 2: c[2] before c[1]; 3: one changed
    c = _sealed("main:1", 3)
    stack.produce_raw([(1, b"k", c[0], []), (1, b"k", c[2], [])], topic=topic)
    stack.produce_raw([(2, b"k", v, []) for v in (c[0], c[2], c[1])], topic=topic)
    changed = json.loads(c[1])
    changed["attempt"] = 9
    stack.produce_raw([(3, b"k", c[0], []), (3, b"k", json.dumps(changed).encode(), []),
                       (3, b"k", c[2], [])], topic=topic)
    rc, data = _verify(stack)
    assert rc == 1 and data["ok"] is False
    parts = data["partitions"]
    assert parts["0"]["ok"] and parts["0"]["records"] == 7, parts["0"]
    assert parts["4"]["ok"] and parts["4"]["records"] == 0
    assert [p["offset"] for p in parts["1"]["problems"]] == [1]
    assert "removed, changed or reordered" in parts["1"]["problems"][0]["reason"]
    assert parts["2"]["problems"] and parts["2"]["problems"][0]["offset"] == 1
    reasons = [p["reason"] for p in parts["3"]["problems"]]
    assert any("was changed" in r for r in reasons), reasons


def test_an_intact_job_type_passes_with_anchors_and_since(stack: Stack) -> None:
    topic = stack.topics.history
    a = _sealed("main:0", 3)
    stack.produce_raw([(0, b"k", v, []) for v in a], topic=topic)
    rc, data = _verify(stack)
    assert rc == 0 and data["ok"], data
    head = data["partitions"]["0"]
    anchor = f"0:{head['head_offset']}:{head['head']}"
    assert _verify(stack, "--anchor", anchor)[0] == 0
    assert _verify(stack, "--anchor", f"0:{head['head_offset']}:{'0' * 64}")[0] == 1
    rc, data = _verify(stack, "--since", "-1s")  # nothing that new, or the newest only
    assert rc == 0, data
    res = run_cli("audit", "verify", "no.such.type",
                  env={"JOBSTREAM_CONFIG": str(stack.config_path)})
    assert res.returncode == 1 and "unknown job type 'no.such.type'" in res.stderr, res.stderr


def test_records_stored_before_the_canonical_form_then_after_verify(stack: Stack) -> None:
    """A worker upgraded mid-chain: its chain head came from records stored in insertion order
    (before T.history records were stored canonical, issue 29); it goes on in the new form."""
    from jobstream.schemas.chain import seal

    compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    prev, values = "0" * 64, []
    for i in range(2):
        sealed = seal(_rec(f"old-{i}", 1), prev, stream="main:0")
        values.append(compact(sealed).encode())
        prev = sealed["chain"]["hash"]
    for i in range(3):
        value, prev = history.encode(_rec(f"new-{i}", 1), prev, "main:0", plain=True)
        values.append(value)
    assert not values[0].startswith(b'{"at"') and values[2].startswith(b'{"at"')
    stack.produce_raw([(0, b"k", v, []) for v in values], topic=stack.topics.history)
    rc, data = _verify(stack)
    assert rc == 0 and data["ok"], data
    part = data["partitions"]["0"]
    assert part["records"] == 5 and part["head"] == prev, part
