"""The pieces every chaos scenario shares: sizes by scale, the fleet of worker processes, a
cheap tail of the sink, waiting for quiescence, and the books.

The books of a scenario, checked after quiescence against what was published:

- every job designed to succeed has a committed ledger record (it succeeded); every job
  designed to fail (the poison) is in the DLQ, once, with its designed error category;
- lost = jobs neither succeeded nor dead-lettered, once the fleet is quiet (when it got
  stuck, after a fresh worker had a last chance to finish them); must be 0;
- runs after a recorded completion (tests.support.harness.runs_after_completion); must be 0;
- the DLQ holds exactly the poison: nothing else, nothing twice;
- no worker exited in a way the scenario did not cause.

The figures go to tests/chaos/results/ (one line per scenario) whether or not they pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobstream.schemas import wire
from tests.support.harness import Stack, runs_after_completion

SCALES = ("short", "medium", "full")
SCALE = os.environ.get("JOBSTREAM_CHAOS_SCALE", "short")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def sized(short: Any, medium: Any, full: Any) -> Any:
    """The value for the scale this run uses (JOBSTREAM_CHAOS_SCALE, default short)."""
    return {"short": short, "medium": medium, "full": full}[SCALE]


def results_path() -> Path:
    """`make chaos` (full) writes latest.json, which the README figures come from; other
    scales write their own file so a CI run never overwrites the full figures."""
    given = os.environ.get("JOBSTREAM_CHAOS_RESULTS")
    if given:
        return Path(given)
    return RESULTS_DIR / ("latest.json" if SCALE == "full" else f"{SCALE}.json")


def headers(msg: Any) -> dict[str, str]:
    return wire.decode_headers(msg.headers())


# -- the workload --------------------------------------------------------------------------


@dataclass
class Workload:
    """Published jobs and what each is designed to do."""

    ok: set[str] = field(default_factory=set)  # must succeed (possibly after retries)
    poison: dict[str, str] = field(default_factory=dict)  # identity -> designed DLQ category
    published: int = 0


def mixed_jobs(
    n: int,
    *,
    retry_every: int = 0,
    poison_every: int = 0,
    keys: int = 500,
    seed: int = 0,
) -> list[tuple[dict[str, Any], str, str]]:
    """(payload, key, designed outcome) for n jobs: mostly "ok", every retry_every-th fails
    once and succeeds on its retry, every poison_every-th fails permanently. Shuffled by seed,
    keys spread so every partition gets work."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if poison_every and i % poison_every == poison_every - 1:
            behaviour, outcome = "permanent", "permanent"
        elif retry_every and i % retry_every == retry_every - 1:
            behaviour, outcome = "fail_until:2", "ok"
        else:
            behaviour, outcome = "ok", "ok"
        out.append(({"seq": i, "behaviour": behaviour}, f"k{i % keys}", outcome))
    rng.shuffle(out)  # retries and poison spread over the whole run
    return out


def publish(stack: Stack, jobs: list[tuple[dict[str, Any], str, str]], wl: Workload) -> None:
    ids = stack.publish_many([(payload, key) for payload, key, _ in jobs])
    for jid, (_, _, outcome) in zip(ids, jobs, strict=True):
        if outcome == "ok":
            wl.ok.add(jid)
        else:
            wl.poison[jid] = outcome
    wl.published += len(ids)


# -- worker processes ----------------------------------------------------------------------


class Fleet:
    """The worker processes of a scenario. Every exit must be one the scenario caused:
    SIGKILL (-9), SIGTERM (0) or an exit it declared with expect(); others are recorded."""

    def __init__(self, stack: Stack, app: str = "tests.apps.sink", **env: str) -> None:
        self.stack = stack
        self.app = app  # the job module the workers run
        # Internal errors log their traceback; a worker that hangs can be made to dump its
        # threads' stacks with SIGABRT (see stop_all).
        self.env = {"JOBSTREAM_DEBUG": "1", "PYTHONFAULTHANDLER": "1", **env}
        self.allowed: dict[int, set[int]] = {}  # pid -> allowed exit codes
        self.logs: dict[int, Path] = {}
        self.started = 0
        self.unexpected: list[str] = []
        self._reported: set[int] = set()

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        name = f"worker-{self.started}.log"
        self.started += 1
        p = self.stack.spawn_worker(self.app, (), self.stack.tmp / name,
                                    self.stack.env(**{**self.env, **env}), False)
        self.allowed[p.pid] = set()
        self.logs[p.pid] = self.stack.tmp / name
        return p

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.stack.procs if p.poll() is None]

    def kill(self, p: subprocess.Popen[bytes]) -> None:
        self.allowed[p.pid].add(-signal.SIGKILL)
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def term(self, p: subprocess.Popen[bytes]) -> None:
        """Graceful stop (a scale-down); not waited for. A worker still starting up has no
        handler yet and dies of the signal (-15), as a pod stopped while starting does."""
        self.allowed[p.pid].update((0, -signal.SIGTERM))
        p.send_signal(signal.SIGTERM)

    def expect(self, p: subprocess.Popen[bytes], *codes: int) -> None:
        self.allowed[p.pid].update(codes)

    def wait(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        """Like Stack.wait_for, but exits the scenario caused are fine (others are recorded,
        and end the wait only when no worker is left)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            if self.check() and not self.alive():
                raise AssertionError(f"every worker is gone while waiting for {what}: "
                                     f"{self.unexpected}")
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                             f"logs in {self.stack.tmp}; exits: {self.unexpected}")

    def check(self) -> list[str]:
        """Record exits nobody asked for (once each); returns all recorded so far."""
        for p in self.stack.procs:
            code = p.poll()
            if code is not None and p.pid not in self._reported:
                if code not in self.allowed.get(p.pid, set()):
                    self.unexpected.append(
                        f"worker pid {p.pid} exited with {code}: {self._tail(p.pid)}"
                    )
                self._reported.add(p.pid)
        return self.unexpected

    def stop_all(self, timeout: float = 45) -> None:
        """SIGTERM every live worker (exit 0, or -15 for one still starting up); one still
        running after `timeout` has hung in its shutdown: it gets SIGABRT (Python's
        faulthandler writes every thread's stack to its log) and is recorded."""
        alive = self.alive()
        for p in alive:
            # As in term(): one still starting up has no handler yet and dies of the signal.
            self.allowed[p.pid].update((0, -signal.SIGTERM))
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in alive:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGABRT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
                self._reported.add(p.pid)
                self.unexpected.append(
                    f"worker pid {p.pid} did not stop within {timeout:.0f}s of SIGTERM; "
                    f"its threads' stacks are in {self.logs.get(p.pid)}"
                )
        self.check()

    def worker_id(self, pid: int) -> str | None:
        """The worker id a process logged when it subscribed (ledger and DLQ records name it)."""
        log = self.logs.get(pid)
        for line in log.read_text(errors="replace").splitlines() if log else []:
            if '"subscribed"' in line:
                return str(json.loads(line)["worker"])
        return None

    def _tail(self, pid: int) -> str:
        log = self.logs.get(pid)
        if log is None or not log.exists():
            return "(no log)"
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if '"level": "error"' in ln or "Traceback" in ln]
        return f"{log}: " + " | ".join((errors or lines)[-3:])[:1500]


class SinkTail:
    """The sink read incrementally: which jobs ran, without re-reading a 100,000-line file."""

    def __init__(self, stack: Stack) -> None:
        self.path = stack.sink
        self.pos = 0
        self.ran: set[str] = set()
        self.runs = 0
        self.last: dict[int, float] = {}  # pid -> end of its latest run

    def poll(self) -> int:
        """Read new lines; how many distinct jobs have run so far."""
        if self.path.exists():
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
            end = data.rfind(b"\n") + 1  # only whole lines; a partial one is read next time
            self.pos += end
            for line in data[:end].splitlines():
                if line.strip():
                    r = json.loads(line)
                    self.ran.add(r["job_id"])
                    self.runs += 1
                    self.last[r["pid"]] = max(self.last.get(r["pid"], 0.0), r["end"])
        return len(self.ran)

    def running(self, wl: Workload, seconds: float, stall_s: float = 90) -> Iterator[int]:
        """Yield the number of distinct jobs run so far, every 0.2 s, until every good job
        ran, `seconds` passed, or no handler ran for `stall_s` (the books then say what is
        missing). The fault-injecting loops of the scenarios run in its body."""
        deadline = time.monotonic() + seconds
        moved_at, runs_seen = time.monotonic(), 0
        while time.monotonic() < deadline:
            ran = self.poll()
            if wl.ok <= self.ran:
                return
            if self.runs != runs_seen:
                moved_at, runs_seen = time.monotonic(), self.runs
            elif time.monotonic() - moved_at > stall_s:
                return
            yield ran
            time.sleep(0.2)


# -- quiescence and the books --------------------------------------------------------------


def job_identity(msg: Any) -> str:
    return headers(msg).get(wire.JOB_ID, "")


def origin_identity(msg: Any) -> str:
    h = headers(msg)
    return f"{h.get(wire.ORIGIN_PARTITION)}:{h.get(wire.ORIGIN_OFFSET)}"


def wait_quiescent(
    stack: Stack,
    fleet: Fleet,
    wl: Workload,
    timeout: float,
    *,
    identity: Callable[[Any], str] = job_identity,
    stall_s: float = 60.0,
) -> bool:
    """Wait until every designed outcome is on the books: each ok job's completion committed
    to the ledger, each poison job in the DLQ, and the group's committed offsets of the main
    topic at its end. False when the time ran out, or nothing moved (no handler run, no new
    ledger or DLQ record) for stall_s: the books then show what is missing."""
    sink = SinkTail(stack)
    deadline = time.monotonic() + timeout
    last_mark: list[Any] = [None]
    last_move = [time.monotonic()]

    def moved(mark: Any) -> bool:
        """False once `mark` (what has happened so far) stayed the same for stall_s."""
        if mark != last_mark[0]:
            last_mark[0], last_move[0] = mark, time.monotonic()
        return time.monotonic() - last_move[0] < stall_s

    def until(pred: Callable[[], bool], every: float) -> bool:
        while time.monotonic() < deadline:
            fleet.check()
            if pred():
                return True
            time.sleep(every)
        return False

    def ran_all() -> bool:
        sink.poll()
        if wl.ok <= sink.ran:
            return True
        if not moved(("runs", sink.runs)):
            raise _Stalled
        return False

    def recorded_all() -> bool:
        done = {jid for jid, _ in stack.ledger_entries(timeout=60)}
        dlq = {identity(m) for m in stack.read_topic(stack.topics.dlq, timeout=60)}
        settled = done | dlq  # an outcome, designed or not (the books judge which)
        if wl.ok <= settled and set(wl.poison) <= settled:
            return True
        if not moved(("books", len(done), len(dlq), sink.poll())):
            raise _Stalled
        return False

    def committed_to_end() -> bool:
        ends = stack.end_offsets(stack.topics.main)
        return {p: max(o, 0) for p, o in stack.committed(stack.topics.main).items()} == ends

    try:
        return (
            until(ran_all, 0.5)
            and until(recorded_all, 3.0)
            and until(committed_to_end, 1.0)
        )
    except _Stalled:
        return False


class _Stalled(Exception):
    """Nothing moved for a while: waiting longer will not balance the books."""


@dataclass
class Books:
    scenario: str
    scale: str
    jobs: int
    lost: int
    runs_after_completion: int
    dead_lettered: int
    elapsed_s: float
    runs: int = 0
    repeated_runs: int = 0  # reruns inside the crash window (allowed)
    dlq_repeats: int = 0  # poison jobs dead-lettered more than once (a violation)
    succeeded: int = 0
    faults: dict[str, Any] = field(default_factory=dict)
    workers_started: int = 0
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.scenario:<16} jobs={self.jobs:>7,} lost={self.lost} "
            f"runs_after_completion={self.runs_after_completion} "
            f"dead_lettered={self.dead_lettered:,} elapsed={self.elapsed_s:.0f}s "
            f"runs={self.runs:,} dlq_repeats={self.dlq_repeats} faults={self.faults}"
            + (f" VIOLATIONS={len(self.violations)}" if self.violations else "")
        )


def audit(
    scenario: str,
    stack: Stack,
    fleet: Fleet,
    wl: Workload,
    elapsed_s: float,
    faults: dict[str, Any],
    *,
    identity: Callable[[Any], str] = job_identity,
    extra: Iterable[str] = (),
) -> Books:
    """The books after quiescence (workers stopped or not); see the module docstring."""
    runs = stack.runs()
    ledger = stack.ledger_entries(timeout=60)
    dlq = stack.read_topic(stack.topics.dlq, timeout=60)
    recorded = Counter(jid for jid, _ in ledger)
    dead = Counter(identity(m) for m in dlq)
    category = {identity(m): headers(m).get(wire.ERROR_CATEGORY) for m in dlq}
    v: list[str] = []
    lost_ok = {j for j in wl.ok if j not in recorded and j not in dead}
    lost_poison = {j for j in wl.poison if j not in dead and j not in recorded}
    if lost_ok or lost_poison:
        v.append(f"lost {len(lost_ok)} ok and {len(lost_poison)} poison jobs, e.g. "
                 f"{sorted(lost_ok | lost_poison)[:5]}")
    after = runs_after_completion(runs, ledger)
    if after:
        v.append(f"{len(after)} runs after a recorded completion, e.g. {after[:3]}")
    unexpected = sorted(set(dead) - set(wl.poison))
    if unexpected:
        v.append(f"{len(unexpected)} unexpected dead letters, e.g. {unexpected[:5]}")
    # A record dead-lettered once is marked in the ledger with its dead letter, so a next
    # owner re-reading it (its offset commit trailed) skips it: each poison job once.
    twice = sorted(j for j, c in dead.items() if c > 1)
    if twice:
        v.append(f"{len(twice)} jobs dead-lettered more than once, e.g. {twice[:5]}")
    wrong = {j: (category[j], want) for j, want in wl.poison.items()
             if j in category and category[j] != want}
    if wrong:
        v.append(f"{len(wrong)} dead letters with the wrong category (got, designed): "
                 f"{list(wrong.items())[:5]}")
    poison_done = sorted(j for j in wl.poison if j in recorded)
    if poison_done:
        v.append(f"{len(poison_done)} poison jobs recorded as succeeded: {poison_done[:5]}")
    strays = sorted(set(recorded) - wl.ok - set(wl.poison))
    if strays:
        v.append(f"{len(strays)} completions of jobs never published: {strays[:5]}")
    double = sorted(j for j, c in recorded.items() if c > 1)
    if double:
        v.append(f"{len(double)} jobs completed and recorded twice: "
                 f"{double[:5]}")
    v += fleet.check()
    v += list(extra)
    ok_runs = [r for r in runs if r["job_id"] in wl.ok]
    return Books(
        scenario=scenario,
        scale=SCALE,
        jobs=wl.published,
        lost=len(lost_ok) + len(lost_poison),
        runs_after_completion=len(after),
        dead_lettered=len(dlq),
        elapsed_s=round(elapsed_s, 1),
        runs=len(runs),
        repeated_runs=len(ok_runs) - len({r["job_id"] for r in ok_runs}),
        succeeded=len(set(recorded) & wl.ok),
        dlq_repeats=len(twice),
        faults=faults,
        workers_started=fleet.started,
        violations=v,
    )


RECORDED: list[Books] = []  # this session's books, printed at the end (see conftest)


def record(books: Books) -> None:
    """Write the scenario's line to the results file (merged by scenario name) and keep it
    for the end-of-session summary."""
    RECORDED.append(books)
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        doc = json.loads(path.read_text())
        lines = {s["scenario"]: s for s in doc.get("scenarios", [])}
    except (OSError, ValueError):
        lines = {}
    entry = asdict(books)
    entry["at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    entry["passed"] = not books.violations
    lines[books.scenario] = entry
    order = ["sigkill", "broker_restart", "zombie", "rebalance_storm", "slow_handlers",
             "bad_input", "network_blips", "scheduler", "workflows"]
    ordered = sorted(lines.values(), key=lambda s: [*order, s["scenario"]].index(s["scenario"]))
    body = ",\n".join("    " + json.dumps(s, sort_keys=False) for s in ordered)
    path.write_text('{\n  "scenarios": [\n' + body + "\n  ]\n}\n")


def conclude(
    scenario: str,
    stack: Stack,
    fleet: Fleet,
    wl: Workload,
    started: float,
    faults: dict[str, Any],
    quiescent: bool,
    *,
    identity: Callable[[Any], str] = job_identity,
    extra: Iterable[str] = (),
) -> Books:
    """Stop the workers gracefully, audit, record the line; the books (assert on them).

    When the fleet did not get everything onto the books, a fresh worker gets a last chance
    first: what it finishes was stuck (a violation all the same), what it cannot finish is
    lost."""
    elapsed = time.monotonic() - started
    fleet.stop_all()
    notes = []
    if not quiescent:
        fleet.start()
        rescued = wait_quiescent(stack, fleet, wl, timeout=180, identity=identity)
        fleet.stop_all()
        notes.append(
            "not quiescent before the deadline: "
            + ("a fresh worker then finished the rest (stuck, not lost)" if rescued
               else "not even a fresh worker could finish the rest")
        )
    books = audit(
        scenario, stack, fleet, wl, elapsed, faults,
        identity=identity, extra=[*notes, *extra],
    )
    record(books)
    print("\n" + books.line())
    return books


def balanced(books: Books) -> str:
    """The assertion message: every violation, one a line."""
    return f"{books.scenario}: books do not balance:\n  " + "\n  ".join(books.violations)
