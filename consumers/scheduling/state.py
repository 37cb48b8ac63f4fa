"""Records of the jobstream.schedules topic: key = schedule name, value = JSON state.

    {"last_slot": "2026-05-01T02:00:00Z" | null,   the newest slot done (fired or skipped)
     "since": "...Z",                               slots up to here are not due (first seen,
                                                    resumed)
     "paused": false,
     "version": "<hash>", "previous": ["<hash>", ...],  the rolling-deploy rule
     "group": "<worker group>", "by": "<writer>", "at": "...Z", "removed": false}

Pure: decoding, merging and the version rule, shared by the firer and the CLI."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from confluent_kafka.admin import AdminClient

from jobstream.config.kafka import client_config
from jobstream.config.settings import Settings
from jobstream.config.topics import SCHEDULES_SPEC, SCHEDULES_TOPIC
from jobstream.consumers.scheduling.cron import parse_slot, slot_id

MAX_PREVIOUS = 20  # older versions a record remembers


@dataclass(frozen=True)
class State:
    last_slot: str | None = None
    since: str | None = None
    paused: bool = False
    version: str | None = None
    previous: tuple[str, ...] = ()
    group: str | None = None
    by: str | None = None
    at: str | None = None
    removed: bool = False

    def base(self) -> datetime | None:
        """Every slot up to this time is done: the later of last_slot and since."""
        times = [parse_slot(t) for t in (self.last_slot, self.since) if t]
        return max(times) if times else None

    def encode(self) -> bytes:
        d = asdict(self)
        d["previous"] = list(self.previous)
        return json.dumps(d, sort_keys=True).encode()


def decode(value: bytes | None) -> State | None:
    """A record's state; None for a tombstone or a value that is not a state."""
    if value is None:
        return None
    try:
        d = json.loads(value)
    except ValueError:
        return None
    if not isinstance(d, dict):
        return None
    known = {k: d.get(k) for k in ("last_slot", "since", "version", "group", "by", "at")}
    clean: dict[str, Any] = {k: v if isinstance(v, str) else None for k, v in known.items()}
    prev = d.get("previous")
    return State(
        **clean,
        paused=bool(d.get("paused")),
        removed=bool(d.get("removed")),
        previous=tuple(p for p in prev if isinstance(p, str)) if isinstance(prev, list) else (),
    )


def later_slot(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return max(a, b)  # same fixed-width UTC format: text order is time order


def merge(old: State | None, new: State) -> State:
    """The state after `new` was read on top of `old`: the newest record wins, except that
    a slot once done stays done (a CLI write may carry an older last_slot) and the version
    history is kept."""
    if old is None:
        return new
    prev = tuple(dict.fromkeys([*new.previous, *old.previous]))[:MAX_PREVIOUS]
    return replace(new, last_slot=later_slot(old.last_slot, new.last_slot), previous=prev)


def superseded(mine: str, states: dict[str, State], group: str) -> dict[str, str]:
    """Schedule name -> the newer version its record shows, for every record of this group
    whose version history names `mine` as an older one."""
    return {name: st.version for name, st in states.items()
            if st.group == group and st.version and st.version != mine
            and mine in st.previous}


def adopt(mine: str, st: State | None) -> tuple[str, ...]:
    """The `previous` of a record written with version `mine` over `st`: its version and
    history (unless that is `mine`)."""
    if st is None or st.version in (None, mine):
        return st.previous if st else ()
    return tuple(dict.fromkeys([st.version or "", *st.previous]))[:MAX_PREVIOUS]


def now_text() -> str:
    return slot_id(datetime.now(UTC))


def topic_names(settings: Settings) -> set[str]:
    admin = AdminClient(client_config(settings.kafka))
    return set(admin.list_topics(timeout=15).topics)


def topic_exists(settings: Settings) -> bool:
    return SCHEDULES_TOPIC in topic_names(settings)


def ensure_topic(settings: Settings) -> None:
    """Create jobstream.schedules when missing (`jobstream topics apply` creates it too)."""
    from jobstream.consumers.ops.topic_plan import ensure

    ensure(settings, SCHEDULES_SPEC)
