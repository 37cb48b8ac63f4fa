"""The workers' /metrics, scraped from `ui.workers` on each page load (concurrently, each
within `ui.scrape_timeout_s`), kept as a short history so that counters become counts in the
last 5 minutes and hour. The history lives in memory only: after the console starts, windows
reach back at most to its start (the page says so)."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from jobstream.config.settings import Settings

KEEP_S = 3700.0  # a little over the longest window
MIN_GAP_S = 5.0  # pages loaded faster than this share a sample


@dataclass
class WorkerScrape:
    url: str
    ok: bool
    error: str | None = None
    in_flight: float = 0.0
    jobs: dict[tuple[str, str], float] = field(default_factory=dict)  # (type, outcome) -> n
    breaker_open: dict[str, float] = field(default_factory=dict)


def _parse(url: str, text: str) -> WorkerScrape:
    w = WorkerScrape(url, True)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "jobstream_jobs_total":
                key = (s.labels.get("job_type", ""), s.labels.get("outcome", ""))
                w.jobs[key] = w.jobs.get(key, 0.0) + s.value
            elif s.name == "jobstream_in_flight":
                w.in_flight += s.value
            elif s.name == "jobstream_circuit_open":
                w.breaker_open[s.labels.get("job_type", "")] = s.value
    return w


def scrape_one(url: str, timeout: float) -> WorkerScrape:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return _parse(url, resp.read(4_000_000).decode("utf-8", "replace"))
    except (OSError, ValueError) as e:
        return WorkerScrape(url, False, error=str(getattr(e, "reason", e)))


class Scraper:
    def __init__(self, settings: Settings) -> None:
        self.urls = list(settings.ui.workers)
        self.timeout = settings.ui.scrape_timeout_s
        self.started = time.time()
        self.history: deque[tuple[float, dict[tuple[str, str, str], float]]] = deque()
        self.last: list[WorkerScrape] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ui-scrape")

    def scrape(self) -> list[WorkerScrape]:
        now = time.time()
        with self._lock:
            if self.history and now - self.history[-1][0] < MIN_GAP_S and self.last:
                return self.last
        got = list(self._pool.map(lambda u: scrape_one(u, self.timeout), self.urls))
        totals = {(w.url, jt, o): v for w in got if w.ok for (jt, o), v in w.jobs.items()}
        with self._lock:
            self.history.append((now, totals))
            while self.history and now - self.history[0][0] > KEEP_S:
                self.history.popleft()
            self.last = got
        return got

    def counted_since(self, window_s: float) -> dict[tuple[str, str], float]:
        """(job type, outcome) -> jobs finished in the window. A counter first seen in this
        window counts from 0 (the worker started in it, or the console did); a counter that
        went down (a worker restarted) counts its new value."""
        with self._lock:
            if not self.history:
                return {}
            now, latest = self.history[-1]
            base: dict[tuple[str, str, str], float] = {}
            for t, totals in self.history:
                if t <= now - window_s:
                    base = totals
                else:
                    break
        out: dict[tuple[str, str], float] = {}
        for key, v in latest.items():
            before = base.get(key, 0.0)
            d = v - before if v >= before else v
            out[(key[1], key[2])] = out.get((key[1], key[2]), 0.0) + d
        return out

    def reach_s(self) -> float:
        """How far back the history reaches."""
        return time.time() - self.started
