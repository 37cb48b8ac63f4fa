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

from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


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


class FairQueue(Generic[T]):
    """One lane's ready jobs, first in first out per tenant, taken round robin across tenants
    (fair sharing, `fair_by`): a tenant with 50,000 jobs fetched and one with 10 alternate, so
    the small one is not kept behind the big one's burst. Without fair sharing every job has
    the same tenant and this is a plain queue. `limit`: most jobs of one tenant running at
    once (`max_in_flight_per_tenant`), counted in `running`, which the caller keeps."""

    def __init__(self, running: Counter[str], limit: int | None = None) -> None:
        self.running = running
        self.limit = limit
        self._by: dict[str, deque[T]] = {}
        self._ring: deque[str] = deque()  # tenants with jobs, in turn order
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, tenant: str, item: T) -> None:
        q = self._by.get(tenant)
        if q is None:
            q = self._by[tenant] = deque()
            self._ring.append(tenant)
        q.append(item)
        self._n += 1

    def ready(self) -> bool:
        """A job that may start now: any at all, or with a limit, one of a tenant under it."""
        if not self._n:
            return False
        limit = self.limit
        return limit is None or any(self.running[t] < limit for t in self._ring)

    def pop(self) -> tuple[str, T] | None:
        """The next tenant's oldest job (None: none may start), its turn passed on."""
        ring, limit = self._ring, self.limit
        for _ in range(len(ring)):
            tenant = ring[0]
            ring.rotate(-1)
            if limit is not None and self.running[tenant] >= limit:
                continue
            q = self._by[tenant]
            item = q.popleft()
            self._n -= 1
            if not q:
                del self._by[tenant]
                ring.pop()  # it was just rotated to the end
            return tenant, item
        return None

    def keep(self, wanted: Callable[[T], bool]) -> None:
        """Drop the jobs that are not wanted (their partition went)."""
        for tenant in list(self._by):
            q = deque(x for x in self._by[tenant] if wanted(x))
            self._n -= len(self._by[tenant]) - len(q)
            if q:
                self._by[tenant] = q
            else:
                del self._by[tenant]
                self._ring.remove(tenant)
