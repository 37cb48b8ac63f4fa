"""Two versions side by side in one run: an older commit (in a git worktree with its own
virtualenv) and this tree, on the same broker, in alternating rounds.

    .venv/bin/python -m benchmarks.compare --base main~3 --only overhead --only io --rounds 2
    make bench-compare BASE=v0.1.0 ARGS="--only overhead --only latency"

Each round runs `benchmarks.run` of both trees, the order flipped every round (base, new;
new, base; ...), so drift of a shared, noisy machine falls on both alike. Prints, per figure,
the median of each side, its range, and new/base with which way is better for that unit;
writes benchmarks/results/compare.json. Figures only the new tree has are listed as new.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT
from benchmarks.figures import fmt

RESULTS = ROOT / "benchmarks" / "results"
HIGHER_IS_BETTER = ("jobs/s", "entries/s")
NEUTRAL = ("% of run",)  # the loop's idle share: neither way is better by itself


class CompareError(Exception):
    pass


def _run(cmd: list[str], cwd: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, text=True, capture_output=True, **kw)


def resolve(rev: str) -> str:
    res = _run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], ROOT)
    if res.returncode:
        raise CompareError(f"--base {rev!r}: not a commit in {ROOT} ({res.stderr.strip()})")
    return res.stdout.strip()


def base_tree(sha: str, work: Path) -> tuple[Path, Path]:
    """A worktree of `sha` and a virtualenv with that tree installed (both reused when present:
    made once, they make later comparisons of the same base quick)."""
    tree, venv = work / f"tree-{sha[:12]}", work / f"venv-{sha[:12]}"
    if not (tree / "benchmarks" / "run.py").exists():
        res = _run(["git", "worktree", "add", "--detach", "--force", str(tree), sha], ROOT)
        if res.returncode:
            raise CompareError(f"git worktree add failed: {res.stderr.strip()}")
    if not (tree / "benchmarks" / "run.py").exists():
        raise CompareError(f"{sha[:12]} has no benchmarks/run.py to run")
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        print(f"installing {sha[:12]} into {venv} ...", flush=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "-q", "-r", str(tree / "requirements.lock")],
            [str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(tree)],
        ]
        for step in steps:
            res = _run(step, tree, timeout=900)
            if res.returncode:
                raise CompareError(f"{' '.join(step[:4])} ...: {res.stderr.strip()[-800:]}")
        (venv / ".installed").touch()
    return tree, python


def run_side(python: Path, tree: Path, args: list[str], out: Path, log: Path) -> list[dict]:
    cmd = [str(python), "-m", "benchmarks.run", *args, "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with log.open("w") as fh:
        res = subprocess.run(cmd, cwd=tree, stdout=fh, stderr=subprocess.STDOUT, env=env,
                             timeout=3600)
    if res.returncode or not out.exists():
        raise CompareError(f"{tree}: benchmarks.run exited {res.returncode}; see {log}")
    return list(json.loads(out.read_text())["rows"])


def direction(unit: str) -> int:
    """+1 when a higher figure is better, -1 when lower is, 0 when neither."""
    if unit in NEUTRAL:
        return 0
    return 1 if unit in HIGHER_IS_BETTER else -1


def summarise(base: list[list[dict]], new: list[list[dict]]) -> list[dict[str, Any]]:
    def by_figure(rounds: list[list[dict]]) -> dict[tuple[str, str], tuple[str, list[float]]]:
        out: dict[tuple[str, str], tuple[str, list[float]]] = {}
        for rows in rounds:
            for r in rows:
                if r.get("measured") is None:
                    continue
                _unit, values = out.setdefault((r["bench"], r["name"]), (r["unit"], []))
                values.append(float(r["measured"]))
        return out

    b, n = by_figure(base), by_figure(new)
    rows = []
    for key in [*n, *(k for k in b if k not in n)]:
        unit = (n.get(key) or b[key])[0]
        bv, nv = (b.get(key) or ("", []))[1], (n.get(key) or ("", []))[1]
        bm = statistics.median(bv) if bv else None
        nm = statistics.median(nv) if nv else None
        ratio = nm / bm if bm and nm is not None else None
        d = direction(unit)
        verdict = ""
        if ratio is not None and d:
            gain = ratio if d > 0 else (1 / ratio if ratio else float("inf"))
            verdict = "better" if gain >= 1.05 else "worse" if gain <= 0.95 else "same"
        rows.append({"bench": key[0], "name": key[1], "unit": unit, "base": bv, "new": nv,
                     "base_median": bm, "new_median": nm, "ratio": ratio, "verdict": verdict})
    return rows


def _span(values: list[float], unit: str) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0], unit)
    return f"{fmt(statistics.median(values), unit)} ({fmt(min(values))}-{fmt(max(values))})"


def table(rows: list[dict[str, Any]], base_name: str) -> str:
    head = ("benchmark", "figure", f"base {base_name}", "new", "new/base", "")
    body = [(r["bench"], r["name"], _span(r["base"], r["unit"]), _span(r["new"], r["unit"]),
             f"{r['ratio']:.2f}" if r["ratio"] is not None else "", r["verdict"]) for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([line.format(*head), line.format(*("-" * w for w in widths)),
                      *(line.format(*row) for row in body)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.compare",
                                 description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the older commit (any git revision)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds per side (default 2)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "jobstream-compare",
                    help="where the base worktree and virtualenv are kept")
    ap.add_argument("--out", type=Path, default=RESULTS / "compare.json")
    args, bench_args = ap.parse_known_args(argv)
    if not 1 <= args.rounds <= 10:
        ap.error("--rounds must be between 1 and 10")
    if any(a in ("--out", "--keep", "--profile") for a in bench_args):
        ap.error("--out, --keep and --profile are benchmarks.run options this command sets")
    try:
        sha = resolve(args.base)
        args.work.mkdir(parents=True, exist_ok=True)
        tree, python = base_tree(sha, args.work)
        sides = {"base": (python, tree), "new": (Path(sys.executable), ROOT)}
        results: dict[str, list[list[dict]]] = {"base": [], "new": []}
        stamp = time.strftime("%Y%m%d%H%M%S")
        for i in range(args.rounds):
            order = ["base", "new"] if i % 2 == 0 else ["new", "base"]
            for side in order:
                py, where = sides[side]
                out = args.work / f"{stamp}-{side}-{i}.json"
                print(f"round {i + 1}/{args.rounds}: {side} ({where}) ...", flush=True)
                results[side].append(run_side(py, where, bench_args, out,
                                              out.with_suffix(".log")))
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rows = summarise(results["base"], results["new"])
    print()
    print(table(rows, sha[:10]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"base": sha, "args": bench_args, "rounds": args.rounds,
                                    "rows": rows}, indent=1) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
