"""CPU used during a bench window, in cores: the whole machine (/proc/stat), given processes
(/proc/PID/stat) and this bench process; and for given threads, the share of the window they
ran, the share they were ready to run but waited for a CPU, and how often they were preempted
(/proc/PID/task/TID/schedstat and status). A latency figure is only read right next to it:
on two cores shared by the broker, the worker and the bench, a tail can come from a saturated
machine rather than from the code measured."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def _machine() -> tuple[int, int]:
    """(busy, all) jiffies over every CPU since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _process_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK


def _thread_sched(pid: int, tid: int) -> tuple[float, float, int] | None:
    """(seconds on a CPU, seconds runnable but waiting for one, times taken off a CPU while
    runnable) of one thread, or None if unknown or gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            ran, waited = (int(x) / 1e9 for x in f.read().split()[:2])
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    return ran, waited, int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return None


@dataclass
class CpuUse:
    machine: float  # cores busy on average, all processes
    cores: int
    processes: dict[str, float]  # cores used on average, by label
    threads: dict[str, tuple[float, float, float]]  # by label: (share of the window a thread
    # ran, share it waited for a CPU, times per second it was preempted)

    def describe(self) -> str:
        each = ", ".join(f"{label} {used:.2f}" for label, used in self.processes.items())
        text = f"CPU in cores: machine {self.machine:.2f} of {self.cores} ({each})"
        for label, (ran, waited, preempted) in self.threads.items():
            text += (
                f"; {label} ran {ran:.0%} of the time and waited {waited:.0%} for a CPU"
                f" (preempted {preempted:,.0f}/s)"
            )
        return text


class CpuWatch:
    """Started before a window and read after it."""

    def __init__(self, pids: dict[str, int], threads: dict[str, tuple[int, int]] | None = None):
        self.pids = pids
        self.threads = threads or {}  # label -> (pid, tid)
        self._wall = time.monotonic()
        self._machine = _machine()
        self._own = _own_s()
        self._procs = {label: _process_s(pid) for label, pid in pids.items()}
        self._sched = {label: _thread_sched(*ids) for label, ids in self.threads.items()}

    def read(self) -> CpuUse:
        wall = max(time.monotonic() - self._wall, 1e-9)
        busy, every = _machine()
        cores = os.cpu_count() or 1
        share = (busy - self._machine[0]) / max(every - self._machine[1], 1)
        used = {
            label: (_process_s(pid) - self._procs[label]) / wall for label, pid in self.pids.items()
        }
        used["bench"] = (_own_s() - self._own) / wall
        threads = {}
        for label, ids in self.threads.items():
            before, after = self._sched[label], _thread_sched(*ids)
            if before is not None and after is not None:
                ran, waited, preempted = (x - y for x, y in zip(after, before, strict=True))
                threads[label] = (ran / wall, waited / wall, preempted / wall)
        return CpuUse(share * cores, cores, used, threads)


def _own_s() -> float:
    t = os.times()
    return t.user + t.system
