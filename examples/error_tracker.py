"""A hook that reports failed jobs to an error tracker (docs/hooks.md).

It posts one JSON event per failed attempt to an HTTP endpoint: a Sentry-style "store" URL, a
GlitchTip or Errbit project, or your own collector. Sending happens on a thread of its own so
the worker's loop never waits for the tracker; a tracker that is down costs dropped reports
(counted), never a slower worker.

Use it from a job module (`jobstream worker --app examples.error_tracker`):

    from examples.error_tracker import ErrorTracker
    add_hook(ErrorTracker(os.environ["ERROR_TRACKER_URL"]))
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
import urllib.request
from typing import Any

from jobstream import Finished, Hook, JobContext, Outcome, PermanentError, add_hook, job


class ErrorTracker(Hook):
    def __init__(
        self,
        url: str,
        *,
        environment: str = "production",
        only_final: bool = False,
        timeout_s: float = 2.0,
        max_queued: int = 1000,
    ) -> None:
        """only_final: report only attempts that go to the dead-letter topic (not each retry)."""
        self.url = url
        self.environment = environment
        self.only_final = only_final
        self.timeout_s = timeout_s
        self.sent = 0
        self.dropped = 0  # the queue was full, or the tracker did not take the event
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queued)
        self._thread = threading.Thread(target=self._send_all, name="error-tracker", daemon=True)
        self._thread.start()

    # The hook point: called on the worker's loop thread, so it only queues the event.
    def after_outcome(self, finished: Finished) -> None:
        if finished.outcome is not Outcome.FAILED or finished.failure is None:
            return
        if self.only_final and not finished.dead:
            return
        job, failure = finished.job, finished.failure
        event = {
            "timestamp": time.time(),
            "level": "error" if finished.dead else "warning",
            "environment": self.environment,
            "server_name": socket.gethostname(),
            "logger": "jobstream",
            "message": f"{job.job_type}: {failure.error_class}: {failure.message}",
            "exception": {"type": failure.error_class, "value": failure.message,
                          "stacktrace": failure.stack},
            "tags": {"job_type": job.job_type, "category": failure.category.value,
                     "dead_lettered": str(finished.dead).lower()},
            "extra": {"job_id": job.job_id, "attempt": job.attempt, "topic": job.topic,
                      "partition": job.partition, "offset": job.offset,
                      "duration_s": finished.duration_s},
            # One issue per job type and error class, not one per message text.
            "fingerprint": [job.job_type, failure.error_class],
        }
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued event was sent or given up (e.g. before the process ends)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _send_all(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is not None:
                    self._send(event)
            finally:
                self._queue.task_done()

    def _send(self, event: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.url, data=json.dumps(event).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                ok = 200 <= response.status < 300
        except OSError:  # unreachable, refused, timed out, or an HTTP error status
            ok = False
        if ok:
            self.sent += 1
        else:
            self.dropped += 1


# -- a job module using it -----------------------------------------------------------------

if url := os.environ.get("ERROR_TRACKER_URL"):
    add_hook(ErrorTracker(url, environment=os.environ.get("ENVIRONMENT", "production")))


@job("orders.confirmation")
def confirm_order(payload: dict[str, Any], ctx: JobContext) -> None:
    if payload["total_cents"] < 0:
        raise PermanentError(f"order {payload['order_id']} has a negative total")
    ctx.log.info("confirmation_sent", order_id=payload["order_id"])
