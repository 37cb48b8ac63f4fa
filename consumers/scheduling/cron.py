"""Slots of a recurring schedule: pure functions of (cron, zone, times), no clock, no Kafka.

A cron expression (5 fields, or 6 with seconds first, as cronsim reads them) in an IANA zone.
Daylight-saving changes follow Debian cron, as cronsim does:

- a *wall-clock* schedule (its minute and hour fields are both fixed, e.g. `30 2 * * *`) is
  matched on the local clock: a local time the spring change skips fires at the next valid
  instant (02:30 -> 03:00 the day clocks go forward), a local time the autumn change repeats
  fires once (at its first occurrence);
- an *interval* schedule (minute or hour starts with `*`, e.g. `*/15 * * * *`) follows real
  time: it fires every 15 minutes through both changes.

Every slot is an aware UTC datetime; a slot's identity is its ISO UTC text (`slot_id`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from jobstream.config.schedules import CatchUp

# A slot at most this old when the firer sees it due is on time (fired whatever catch_up says);
# an older one was missed (downtime, a takeover) and follows catch_up.
GRACE_S = 2.0
# Most slots looked at in one plan: a per-second schedule down for a day has 86,400 missed.
SCAN_LIMIT = 100_000


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Berlin)")\
            from None


def check_cron(expr: str) -> str:
    """The expression, stripped, if cronsim reads it and it ever fires; CronError otherwise."""
    text = " ".join(str(expr).split())
    if len(text.split()) not in (5, 6):
        raise CronError(f"cron {expr!r}: expected 5 fields (minute hour day month weekday), "
                        "or 6 with seconds first")
    try:
        next(iter(CronSim(text, datetime(2026, 1, 1, tzinfo=UTC))))
    except CronSimError as e:
        raise CronError(f"cron {expr!r}: {e}") from None
    except StopIteration:
        raise CronError(f"cron {expr!r}: never fires") from None
    return text


def slot_id(slot: datetime) -> str:
    """A slot's identity: ISO 8601 in UTC, whole seconds, `Z` (2026-03-29T01:00:00Z)."""
    return slot.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_slot(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Cron:
    expr: str
    tz: str = "UTC"

    def __post_init__(self) -> None:
        object.__setattr__(self, "expr", check_cron(self.expr))
        zone(self.tz)

    @property
    def wall_clock(self) -> bool:
        """Minute and hour both fixed: matched on the local clock (see the module doc)."""
        parts = self.expr.split()
        minute, hour = (parts[0], parts[1]) if len(parts) == 5 else (parts[1], parts[2])
        return not minute.startswith("*") and not hour.startswith("*")

    def after(self, t: datetime) -> Iterator[datetime]:
        """Slots strictly after t, in order (UTC)."""
        z = zone(self.tz)
        t = t.astimezone(UTC)
        if not self.wall_clock or self.tz == "UTC":
            start = t.astimezone(z) if self.tz != "UTC" else t
            for s in CronSim(self.expr, start.replace(microsecond=0)):
                s = s.astimezone(UTC)
                if s > t:
                    yield s
            return
        # Wall clock: iterate naive local times, then place each on the time line. Start an
        # hour and more early: t may be in the repeated hour (fold=1), whose slots of the
        # first pass map to instants before t and are dropped by the filter.
        naive = t.astimezone(z).replace(tzinfo=None, microsecond=0) - timedelta(hours=2)
        last: datetime | None = None
        for local in CronSim(self.expr, naive):
            s = _place(local, z)
            if s > t and (last is None or s > last):
                last = s
                yield s

    def upto(self, t: datetime) -> Iterator[datetime]:
        """Slots at or before t, newest first (UTC)."""
        z = zone(self.tz)
        t = t.astimezone(UTC)
        if not self.wall_clock or self.tz == "UTC":
            start = t.astimezone(z) if self.tz != "UTC" else t
            # cronsim's reverse iteration starts strictly before its start: start a second on.
            for s in CronSim(self.expr, start.replace(microsecond=0) + timedelta(seconds=1),
                             reverse=True):
                s = s.astimezone(UTC)
                if s <= t:
                    yield s
            return
        naive = t.astimezone(z).replace(tzinfo=None, microsecond=0) + timedelta(hours=2)
        last: datetime | None = None
        for local in CronSim(self.expr, naive, reverse=True):
            s = _place(local, z)
            if s <= t and (last is None or s < last):
                last = s
                yield s

    def next(self, t: datetime) -> datetime | None:
        return next(iter(self.after(t)), None)

    def between(self, after: datetime, until: datetime, limit: int = 1000
                ) -> tuple[list[datetime], int, bool]:
        """(the newest `limit` slots in (after, until], oldest first; how many slots there are
        in all, counted up to SCAN_LIMIT; True when the count stopped there)."""
        n = 0
        for s in self.after(after):
            if s > until:
                break
            n += 1
            if n >= SCAN_LIMIT:
                break
        newest: list[datetime] = []
        for s in self.upto(until):
            if s <= after or len(newest) >= limit:
                break
            newest.append(s)
        newest.reverse()
        return newest, n, n >= SCAN_LIMIT


def _place(local: datetime, z: ZoneInfo) -> datetime:
    """A naive local time on the time line: a skipped one moves to the next valid instant (as
    cronsim does, minute by minute), a repeated one takes its first occurrence."""
    aware = local.replace(tzinfo=z, fold=0)
    while aware.astimezone(UTC).astimezone(z).replace(tzinfo=None) != aware.replace(tzinfo=None):
        local += timedelta(minutes=1)
        local = local.replace(second=0)
        aware = local.replace(tzinfo=z, fold=0)
    return aware.astimezone(UTC)


@dataclass(frozen=True)
class Plan:
    fire: list[datetime]  # slots to fire now, oldest first
    missed: int  # due slots not fired (catch_up), at least this many when `cut`
    last: datetime | None  # the newest due slot: the state's last slot once fired
    cut: bool = False


def plan(cron: Cron, base: datetime, now: datetime, catch_up: CatchUp,
         max_catch_up: int = 100, grace_s: float = GRACE_S) -> Plan:
    """What to fire at `now` when every slot up to `base` is done (fired or skipped).

    Slots due within grace_s of now are on time and always fire. Older due slots were missed:
    `latest` fires the newest of them, `all` the newest max_catch_up of them, `none` none."""
    edge = now - timedelta(seconds=grace_s)
    keep = max(max_catch_up, 1) + int(grace_s) + 2  # the newest missed ones and the on-time
    due, count, cut = cron.between(base, now, limit=keep)
    if not due:
        return Plan([], 0, None)
    on_time = [s for s in due if s >= edge]
    missed = due[: len(due) - len(on_time)]
    if catch_up is CatchUp.LATEST:
        caught = missed[-1:]
    elif catch_up is CatchUp.ALL:
        caught = missed[-max_catch_up:] if max_catch_up > 0 else []
    else:
        caught = []
    return Plan(caught + on_time, count - len(on_time) - len(caught), due[-1], cut)
