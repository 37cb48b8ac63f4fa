"""Summarise a py-spy raw (collapsed stacks) profile: where the worker's CPU samples go.

    .venv/bin/python -m benchmarks.profile_report benchmarks/results/profile-overhead-alo-0.txt

py-spy samples only threads that are running (not idle), so shares are of busy samples.
"Self" is the innermost frame; "inclusive" counts a function once per sample it is on the
stack of. Frames are "function (file:line)"; lines are dropped so a function is one row.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_OURS = re.compile(r"\((config|schemas|producers|consumers)/")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def _name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})"


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([_name(f) for f in stack.split(";")], int(count)))
    return stacks


def summarise(stacks: list[tuple[list[str], int]], top: int, under: str | None) -> str:
    if under:
        stacks = [(s, n) for s, n in stacks if any(under in f for f in s)]
    total = sum(n for _, n in stacks) or 1
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, n in stacks:
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    lines = [f"{total} busy samples" + (f" under {under!r}" if under else "")]
    lines.append(f"\ntop {top} by self time:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append(f"\ntop {top} jobstream functions (config/schemas/producers/consumers) inclusive:")
    ours = [(f, n) for f, n in incl.most_common() if _OURS.search(f)]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in ours[:top]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--under", help="only samples with a frame containing this text")
    args = ap.parse_args()
    print(summarise(load(args.profile), args.top, args.under))


if __name__ == "__main__":
    main()
