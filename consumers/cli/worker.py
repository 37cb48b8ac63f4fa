"""`jobstream worker`: run a worker (consumers/runner.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from jobstream.consumers.cli.common import fail, settings
from jobstream.consumers.cli.topics import JobTypesOpt


def worker(
    app_module: Annotated[
        str | None, typer.Option("--app", help="Job module to import (or JOBSTREAM_APP).")
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Consumer group (default from settings).")
    ] = None,
    job_type: JobTypesOpt = None,
) -> None:
    """Run a worker: consume the job types' topics in a consumer group and run handlers.

    Exit codes:

    0  stopped by SIGTERM or SIGINT (what was running finished and was committed)

    1  error: settings, the job module (import failed, no handlers), HTTP port, brokers

    3  fenced: another worker took over this one's partitions

    4  the DLQ guard tripped (worker.dlq_guard)

    5  worker.assignment differs from the strategy of the group's running members

    6  a handler ended the process (os._exit); see worker.max_crashes

    70  internal error in jobstream itself (JOBSTREAM_DEBUG=1 shows the traceback)

    130  a second signal: exited at once
    """
    from jobstream.consumers.runner import run_worker

    s = settings()
    module = app_module or s.app
    if not module:
        fail("no job module: pass --app my.jobs or set JOBSTREAM_APP")
    # run_worker checks the connection itself, after the local checks (job module, HTTP port).
    raise typer.Exit(run_worker(s, module, group=group, job_types=job_type))
