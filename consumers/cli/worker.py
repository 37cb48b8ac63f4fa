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
    processes: Annotated[
        str | None, typer.Option(
            "--processes", help="Worker processes in this pod, or `auto` for its CPUs "
            "(default worker.processes, 1).")
    ] = None,
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
    n = _processes(processes, s.worker.processes)
    if n > 1:
        import sys

        from jobstream.config.logging import configure_logging
        from jobstream.consumers.supervisor import Supervisor, child_argv

        configure_logging(s.log)
        raise typer.Exit(Supervisor(s, child_argv(sys.argv[1:]), n).run())
    # run_worker checks the connection itself, after the local checks (job module, HTTP port).
    raise typer.Exit(run_worker(s, module, group=group, job_types=job_type))


def _processes(given: str | None, setting: int | str) -> int:
    from jobstream.consumers.supervisor import available_cpus

    value: int | str = setting if given is None else given.strip().lower()
    if value == "auto":
        return available_cpus()
    try:
        n = int(value)
    except ValueError:
        fail(f"--processes {given!r}: a number from 1 to 64, or `auto`")
    if not 1 <= n <= 64:
        fail(f"--processes {n}: a number from 1 to 64, or `auto`")
    return n
