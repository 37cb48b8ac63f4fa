"""`jobstream worker`: load the job module, start the HTTP server, run the poll loop, and turn
SIGTERM/SIGINT into a graceful stop (a second signal exits at once)."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
from types import FrameType

from config.logging import configure_logging, get_logger
from config.settings import Settings
from consumers.handler_exit import guard_process_exit
from consumers.health import Health, HealthServer
from consumers.jobs import AppError, load_app
from consumers.metrics import Metrics
from consumers.worker import Worker


def run_worker(
    settings: Settings, module: str, *, group: str | None = None, job_types: list[str] | None = None
) -> int:
    configure_logging(settings.log, buffered=True)
    log = get_logger("jobstream.runner")
    jobs = load_app(module)
    if job_types:
        unknown = sorted(set(job_types) - set(jobs))
        if unknown:
            raise AppError(
                f"--job-type {unknown}: not registered by {module} (registered: {sorted(jobs)})"
            )
        jobs = {jt: jobs[jt] for jt in job_types}
    metrics = Metrics()
    health = Health()
    worker = Worker(settings, jobs, group=group, metrics=metrics, health=health)
    # A handler that takes the process down: a segfault leaves every thread's stack in the log,
    # os._exit (even os._exit(0)) exits EXIT_HANDLER_ENDED_PROCESS.
    faulthandler.enable()
    guard_process_exit(worker.worker_id)
    server = None
    if settings.worker.http_port:
        server = HealthServer(
            settings.worker.http_host, settings.worker.http_port, health, metrics.registry
        )
        server.start()
        log.info("http_listening", host=settings.worker.http_host, port=server.port)

    signals = {"count": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # No logging in here: the signal can land while this thread holds the log buffer's
        # lock (a flush), and logging would wait for it for ever. The loop logs `stopping`.
        signals["count"] += 1
        name = signal.Signals(signum).name
        if signals["count"] > 1:
            line = {"event": "second_signal_exiting_now", "signal": name, "level": "warning"}
            os.write(2, (json.dumps(line) + "\n").encode())
            os._exit(130)
        worker.stop(name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return worker.run()
    finally:
        if server:
            server.stop()
