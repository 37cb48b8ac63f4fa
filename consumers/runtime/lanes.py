"""The lane decisions of a job type with priority lanes (docs/priorities.md), pure: no Kafka, no
clock. `LanePicker` says which lane's job starts next; `LaneFlow` says which lanes' partitions
fetch. consumers/runtime/lane_gate.py applies them in the worker.

LanePicker is a smooth weighted round robin (as nginx balances upstreams): every pick, each
lane that has a job ready gains its weight in credit, the richest lane starts its job and pays
the sum of the weights in play. With every lane ready the starts follow the weights exactly and
evenly spread (8:3:1 -> 12 starts hold 8, 3 and 1); a lane with nothing ready neither gains nor
pays, so its share goes to the others (it lends it), and a lane alone gets every start. No lane
with work waits more than a round of sum(weights) picks.

LaneFlow splits the worker's buffer of fetched jobs (max_in_flight + max_buffered) by weight:
each lane is guaranteed its reserve. While the buffer is full, a lane holding at least its
reserve pauses; the others keep fetching up to theirs. So a backlog of `low` fills an idle
buffer (a lone lane uses all of it) but never keeps `high` from fetching, and under a `high`
flood `low` still fetches its reserve, which keeps its share of starts. A paused lane resumes
once it is down to half its reserve or the buffer to half, in time for the refetch (a few ms
with the fetch wake-up, consumers/runtime/fetch_wake.py) to land before its jobs run out.
"""

from __future__ import annotations

from collections.abc import Sequence


class LanePicker:
    def __init__(self, weights: Sequence[int]) -> None:
        if not weights or any(w < 1 for w in weights):
            raise ValueError(f"lane weights must be positive, got {list(weights)}")
        self.weights = tuple(weights)
        self._credit = [0] * len(self.weights)

    def pick(self, ready: Sequence[bool]) -> int | None:
        """The index of the lane whose job starts next among those with one ready (None when
        none has); ties go to the higher lane (the lower index)."""
        best = -1
        total = 0
        credit = self._credit
        for i, w in enumerate(self.weights):
            if ready[i]:
                credit[i] += w
                total += w
                if best < 0 or credit[i] > credit[best]:
                    best = i
        if best < 0:
            return None
        credit[best] -= total
        return best


class LaneFlow:
    def __init__(self, weights: Sequence[int], buffer: int) -> None:
        """buffer: the fetched-and-unfinished jobs the worker holds before it pauses."""
        self.weights = tuple(weights)
        self.buffer = max(1, buffer)
        total = sum(self.weights)
        # At least 2, so half a reserve is still a job: a lane never pauses with nothing left.
        self.reserves = tuple(max(2, -(-self.buffer * w // total)) for w in self.weights)
        self.paused = [False] * len(self.weights)

    def step(self, buffered: Sequence[int]) -> list[bool]:
        """Given each lane's fetched-and-unfinished jobs, which lanes should not fetch."""
        total = sum(buffered)
        for i, n in enumerate(buffered):
            reserve = self.reserves[i]
            if self.paused[i]:
                if n <= reserve // 2 or total <= self.buffer // 2:
                    self.paused[i] = False
            elif total >= self.buffer and n >= reserve:
                self.paused[i] = True
        return list(self.paused)
