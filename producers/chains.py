"""Chains: jobs that run one after another, each step's result handed to the next
(docs/workflows.md).

`chain(("a", p1), ("b", p2), ("c", p3))` is published as its first step, with the rest of the
chain in the `js-chain` header (JSON). When a step succeeds, the worker enqueues the next step
as its child (consumers/runtime/children.py: in the same commit as the step's success, with a
derived id): the next step's payload is the payload given for it here, with every field of the
previous step's result that is a field of the next step's schema set over it. A step's result
must be a JSON object (a dict) or None. A dead-lettered step stops the chain; its history
says where (`jobstream jobs show`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from jobstream.producers.errors import InvalidJob, check_key
from jobstream.schemas import wire

if TYPE_CHECKING:
    from jobstream.schemas.registry import SchemaRegistry

CHAIN: Final = wire.CHAIN  # the header: the chain as the step that carries it sees it
MAX_HEADER_BYTES: Final = 64 * 1024
VERSION: Final = 1


@dataclass(frozen=True)
class Step:
    job_type: str
    payload: dict[str, Any]
    key: str | None = None


@dataclass(frozen=True)
class Chain:
    steps: tuple[Step, ...]


def chain(*steps: tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], str | None]
          | Step) -> Chain:
    """A chain of steps, each `(job_type, payload)` or `(job_type, payload, key)`."""
    if not steps:
        raise InvalidJob("chain: give at least one step, e.g. chain(('a', {...}), ('b', {...}))")
    out = []
    for i, s in enumerate(steps, 1):
        if isinstance(s, Step):
            out.append(s)
            continue
        if not isinstance(s, tuple) or len(s) not in (2, 3) or not isinstance(s[0], str):
            raise InvalidJob(f"chain: step {i} must be (job_type, payload) or "
                             f"(job_type, payload, key), got {s!r:.100}")
        payload = s[1]
        if not isinstance(payload, Mapping):
            raise InvalidJob(f"chain: step {i} ({s[0]}): the payload must be a mapping, got "
                             f"{type(payload).__name__}")
        key = s[2] if len(s) == 3 else None
        if key is not None:
            check_key(key)
        out.append(Step(s[0], dict(payload), key))
    return Chain(tuple(out))


def as_chain(steps: Iterable[Any]) -> Chain:
    """`ctx.chain(chain(...))` or `ctx.chain(("a", p1), ...)`."""
    steps = tuple(steps)
    if len(steps) == 1 and isinstance(steps[0], Chain):
        return steps[0]
    return chain(*steps)


def check(ch: Chain, registry: SchemaRegistry) -> None:
    """What can be checked before the chain runs: known job types, payloads that are JSON (they
    travel in a header) and name only fields of their schema. The first step is validated in
    full when it is published; each later one when the step before it succeeded (the previous
    result fills it in)."""
    for i, s in enumerate(ch.steps, 1):
        fields = schema_fields(registry, s.job_type)
        unknown = sorted(set(s.payload) - fields)
        if unknown:
            raise InvalidJob(f"chain: step {i} ({s.job_type}): unknown field(s) {unknown}; "
                             f"the schema has {sorted(fields)}")
        if i > 1:
            try:
                json.dumps(s.payload, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise InvalidJob(f"chain: step {i} ({s.job_type}): the payload must be JSON "
                                 f"(it travels in the {CHAIN} header): {e}") from None


def schema_fields(registry: SchemaRegistry, job_type: str) -> set[str]:
    raw = registry.latest(job_type).raw  # UnknownJobType names the job type
    return {f["name"] for f in raw.get("fields", []) if isinstance(f, dict) and "name" in f}


def header(chain_id: str, types: list[str], step: int, rest: tuple[Step, ...]) -> bytes:
    """The header a step carries: every step's job type, which one it is (1-based), and the
    steps after it in full."""
    value = json.dumps({
        "v": VERSION, "id": chain_id, "step": step, "types": types,
        "rest": [[s.job_type, s.payload, s.key] for s in rest],
    }, separators=(",", ":"), ensure_ascii=False).encode()
    if len(value) > MAX_HEADER_BYTES:
        raise InvalidJob(f"chain: the rest of the chain is {len(value):,} bytes of JSON, over "
                         f"{MAX_HEADER_BYTES:,}; pass references to big data, not the data")
    return value


@dataclass(frozen=True)
class Position:
    """A step's place in its chain, read from its header."""

    chain_id: str
    step: int  # 1-based
    types: list[str]
    rest: list[Step]

    @property
    def total(self) -> int:
        return len(self.types)


def position(headers: Mapping[str, str]) -> Position | None:
    """The step's position, None when the job is not a chain step (or the header is not ours:
    a bad header never fails the job, its chain just stops, which `jobs show` says)."""
    raw = headers.get(CHAIN)
    if not raw:
        return None
    try:
        d = json.loads(raw)
        rest = [Step(str(t), dict(p), k) for t, p, k in d["rest"]]
        return Position(str(d["id"]), int(d["step"]), [str(t) for t in d["types"]], rest)
    except (ValueError, KeyError, TypeError):
        return None


def next_payload(step: Step, result: Any, fields: set[str]) -> dict[str, Any]:
    """The next step's payload: its own, with the previous result's fields of its schema set."""
    if result is None:
        return dict(step.payload)
    if not isinstance(result, Mapping):
        raise InvalidJob(f"a chain step must return a dict (its fields go to the next step, "
                         f"{step.job_type}) or None, not {type(result).__name__}")
    return {**step.payload, **{k: v for k, v in result.items() if k in fields}}


def first_headers(chain_id: str, ch: Chain) -> wire.HeaderList:
    return [(CHAIN, header(chain_id, [s.job_type for s in ch.steps], 1, ch.steps[1:]))]


def publish_chain(pub: Any, ch: Chain, key: str | None, timeout: float) -> str:
    """Publish the chain's first step (validated in full) with the rest in its header; wait
    for the broker's acknowledgement; return the first step's job id (the chain's id)."""
    import threading
    import time

    from jobstream.producers.errors import PublishError
    from jobstream.producers.publisher import new_job_id

    check(ch, pub.registry)
    if key is not None:
        check_key(key)
        ch = Chain(tuple(Step(s.job_type, s.payload, s.key or key) for s in ch.steps))
    first = ch.steps[0]
    jid = new_job_id()
    topic, jid, value, hdrs = pub.build(first.job_type, first.payload, key=first.key,
                                        job_id=jid)
    hdrs += first_headers(jid, ch)
    done = threading.Event()
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        errors.append(err)
        done.set()

    pub.send(topic, (first.key or jid).encode(), value, hdrs, on_delivery=on_delivery)
    deadline = time.monotonic() + timeout
    while not done.is_set():
        if time.monotonic() > deadline:
            raise PublishError(f"chain {jid}: no acknowledgement within {timeout}s")
        pub.producer.poll(0.05)
    if errors[0] is not None:
        raise PublishError(f"chain {jid}: {errors[0].str()}")
    return str(jid)
