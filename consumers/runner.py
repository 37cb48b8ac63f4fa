"""`jobstream worker`: load the job module, start the HTTP server, run the poll loop, and turn
SIGTERM/SIGINT into a graceful stop (a second signal exits at once)."""

from __future__ import annotations

import errno
import faulthandler
import json
import os
import signal
from types import FrameType

from prometheus_client import CollectorRegistry

from jobstream.config.logging import configure_logging, get_logger
from jobstream.config.settings import Settings, SettingsError, WorkerSettings
from jobstream.consumers.batches.owner import start_batch_owner
from jobstream.consumers.errors import ExitCode
from jobstream.consumers.health import Health, HealthServer
from jobstream.consumers.jobs import AppError, load_app
from jobstream.consumers.metrics import Metrics
from jobstream.consumers.runtime.handler_exit import guard_process_exit
from jobstream.consumers.runtime.loop import Worker
from jobstream.consumers.scheduling import start_scheduler
from jobstream.consumers.scheduling.recurring import start_firer
from jobstream.producers.connection import check_connection


def run_worker(
    settings: Settings, module: str, *, group: str | None = None, job_types: list[str] | None = None
) -> int:
    configure_logging(settings.log, buffered=True, capture_print=True)
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
    # Local problems (the module above, the port here) before any connection attempt.
    server = _bind_http(settings.worker, health, metrics.registry)
    scheduler = firer = batches = None
    try:
        check_connection(settings.kafka)
        worker = Worker(settings, jobs, group=group, metrics=metrics, health=health)
        # A handler that takes the process down: a segfault leaves every thread's stack in the
        # log, os._exit (even os._exit(0)) exits EXIT_HANDLER_ENDED_PROCESS.
        faulthandler.enable()
        guard_process_exit(worker.worker_id)
        if server:
            server.start()
            log.info("http_listening", host=settings.worker.http_host, port=server.port)
        _handle_signals(worker)
        scheduler = start_scheduler(settings, list(jobs), worker.group, worker.worker_id,
                                    on_failure=worker.stop)
        firer = start_firer(settings, worker.group, worker.worker_id, metrics, worker.stop)
        batches = start_batch_owner(settings, worker.group, worker.worker_id, metrics,
                                    worker.stop)
        return worker.run()
    finally:
        if batches:
            batches.stop()
        if firer:
            firer.stop()
        if scheduler:
            scheduler.stop()
        if server:
            server.stop()


def _bind_http(
    ws: WorkerSettings, health: Health, registry: CollectorRegistry
) -> HealthServer | None:
    """The HTTP server, bound; a port in use or a wrong host is a settings error naming both."""
    if not ws.http_port:
        return None
    try:
        return HealthServer(ws.http_host, ws.http_port, health, registry)
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            raise SettingsError(
                f"worker.http_port={ws.http_port}: cannot listen on {ws.http_host}:{ws.http_port}"
                f" ({reason}); set JOBSTREAM_WORKER__HTTP_PORT to a free port, or 0 for no HTTP"
                " server"
            ) from None
        raise SettingsError(
            f"worker.http_host={ws.http_host!r}: cannot listen there ({reason}); set "
            "JOBSTREAM_WORKER__HTTP_HOST to an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
        ) from None


def _handle_signals(worker: Worker) -> None:
    signals = {"count": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # No logging in here: the signal can land while this thread holds the log buffer's
        # lock (a flush), and logging would wait for it for ever. The loop logs `stopping`.
        signals["count"] += 1
        name = signal.Signals(signum).name
        if signals["count"] > 1:
            line = {"event": "second_signal_exiting_now", "signal": name, "level": "warning"}
            os.write(2, (json.dumps(line) + "\n").encode())
            os._exit(ExitCode.SECOND_SIGNAL)
        worker.stop(name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
