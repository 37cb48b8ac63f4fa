"""The read-only pages: overview, job type, audit trail."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from jobstream.consumers.ops.dlq import DeadLetter
from jobstream.consumers.ui.kafka_view import View
from jobstream.consumers.ui.scrape import WorkerScrape
from jobstream.consumers.ui.web import Console, console, int_param, job_type_of, render


@dataclass
class Row:
    """One job type on the overview."""

    job_type: str
    rate: float  # records enqueued per second, last 5 minutes
    lag: int
    in_flight: float | None
    succeeded: dict[str, float | None]  # workers' /metrics; None without any
    retried: dict[str, float | None]
    dead: dict[str, int]  # from the DLQ records' failure times
    dlq_size: int
    dlq_ratio: float | None  # dead-lettered / (succeeded + dead-lettered), last hour
    breaker: str
    workers: int
    missing: bool  # its topics do not exist


def _breaker(scrapes: list[WorkerScrape], jt: str) -> str:
    seen = [w.breaker_open[jt] for w in scrapes if w.ok and jt in w.breaker_open]
    if not seen:
        return "-" if not any(w.ok for w in scrapes) else "closed"
    return "open" if max(seen) >= 1 else "closed"


WINDOW_S = {"5m": 300, "1h": 3600}


def dead_letters(c: Console, view: View) -> dict[str, list[DeadLetter]]:
    """Each job type's DLQ records, read only where the topic changed since the last page."""
    todo = {n: jt.dlq for n, jt in view.jobs.items() if jt.dlq in view.topics}
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="ui-dlq") as pool:
        got = pool.map(lambda t: c.dlq.records(t, view.offsets.bounds(t)), todo.values())
        return dict(zip(todo, got, strict=True))


def overview_rows(view: View, scrapes: list[WorkerScrape],
                  done: dict[str, dict[tuple[str, str], float]],
                  dlqs: dict[str, list[DeadLetter]]) -> list[Row]:
    any_ok = any(w.ok for w in scrapes)
    now_ms = time.time() * 1000
    rows = []
    for name, jt in view.jobs.items():
        off = view.offsets
        records = dlqs.get(name, [])
        dead = {w: sum(1 for dl in records if (dl.when_ms or 0) >= now_ms - s * 1000)
                for w, s in WINDOW_S.items()}

        def metric(outcome: str, window: str, name: str = name) -> float | None:
            return done[window].get((name, outcome), 0.0) if any_ok else None

        succeeded = {w: metric("succeeded", w) for w in WINDOW_S}
        finished = (succeeded["1h"] or 0) + dead["1h"]
        serving = [w for w in scrapes if w.ok and any(k[0] == name for k in w.jobs)]
        rows.append(Row(
            job_type=name, rate=off.in_window(list(jt.lanes or (jt.main,)), "5m") / 300,
            lag=off.lag(list(jt.consumed)),  # priority lanes included
            in_flight=sum(w.in_flight for w in serving) if any_ok else None,
            succeeded=succeeded, retried={w: metric("retried", w) for w in WINDOW_S},
            dead=dead, dlq_size=len(records),
            dlq_ratio=dead["1h"] / finished if finished else None,
            breaker=_breaker(scrapes, name), workers=len(view.workers_of(jt)),
            missing=jt.main not in view.topics))
    return rows


def overview(request: Request) -> HTMLResponse:
    c = console(request)
    view = c.kafka.view()
    scrapes = c.scraper.scrape()
    done = {w: c.scraper.counted_since(s) for w, s in WINDOW_S.items()}
    rows = overview_rows(view, scrapes, done, dead_letters(c, view))
    return render(request, "overview.html", rows=rows, view=view,
                  scrapes=scrapes, history_s=c.scraper.reach_s(),
                  scrape_configured=bool(c.scraper.urls))


def _chart(counts: list[int], width: int = 480, height: int = 120) -> dict[str, Any]:
    """Bars for an inline SVG (no script): x, y, w, h per bucket, and the axis maximum."""
    top = max(counts) if counts and max(counts) > 0 else 1
    bw = width / max(1, len(counts))
    bars = [{"x": round(i * bw + 1, 1), "w": round(bw - 2, 1),
             "h": round(n / top * (height - 20), 1), "n": n,
             "y": round(height - n / top * (height - 20), 1)} for i, n in enumerate(counts)]
    return {"bars": bars, "max": top, "width": width, "height": height}


def job_type_page(request: Request) -> HTMLResponse:
    c = console(request)
    name = job_type_of(request)
    view = c.kafka.view()
    jt = view.jobs[name]
    off = view.offsets
    partitions = []
    for topic in jt.consumed:  # the lanes (docs/priorities.md), then the tiers
        for p in range(view.topics.get(topic, 0)):
            k = (topic, p)
            owner = view.owner(topic, p)
            partitions.append({
                "topic": topic, "partition": p, "committed": off.committed.get(k),
                "high": off.high.get(k),
                "lag": max(0, off.high.get(k, 0) - off.committed.get(k, off.low.get(k, 0))),
                "owner": f"{owner.client_id} ({owner.host})" if owner else "-"})
    tiers = [{"topic": t, "delay": d, "size": off.size([t]), "exists": t in view.topics}
             for t, d in zip(jt.retries, jt.tier_seconds, strict=True)]
    dlq_size = len(c.dlq.records(jt.dlq, off.bounds(jt.dlq))) if jt.dlq in view.topics else 0
    enq = c.kafka.throughput(jt.main, view.topics.get(jt.main, 0)) if jt.main in view.topics \
        else []
    dead = c.kafka.throughput(jt.dlq, view.topics.get(jt.dlq, 0)) if jt.dlq in view.topics \
        else []
    return render(request, "job_type.html", name=name, jt=jt, partitions=partitions,
                  tiers=tiers, dlq_size=dlq_size, dlq_exists=jt.dlq in view.topics,
                  main_exists=jt.main in view.topics, chart=_chart(enq), dead_chart=_chart(dead),
                  workers=view.workers_of(jt), group=view.group, group_state=view.group_state)


def audit_page(request: Request) -> HTMLResponse:
    c = console(request)
    limit = int_param(request.query_params.get("limit"), "limit", 1, 1000, default=100)
    report, recent = c.audit.refresh()
    rows = list(reversed(recent[-limit:]))
    return render(request, "audit.html", rows=rows, report=report.as_dict(), limit=limit)
