"""The `jobstream` command line. User mistakes end in one clear line and a non-zero exit."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from config.settings import Settings, SettingsError, load_settings

app = typer.Typer(help="Background jobs on Kafka.", no_args_is_help=True, add_completion=False)
broker_app = typer.Typer(
    help="A local single-node Apache Kafka for development and tests.", no_args_is_help=True
)
topics_app = typer.Typer(
    help="Create, check and show the topics of every job type.", no_args_is_help=True
)
schemas_app = typer.Typer(help="Check the Avro schemas and job definitions.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")

out = Console()
err = Console(stderr=True)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1 (or `code`)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


def settings() -> Settings:
    return load_settings()


def connected(s: Settings) -> Settings:
    """Fail fast with one line when the brokers refuse these settings (wrong password, untrusted
    or missing certificate): librdkafka itself would retry such failures for ever."""
    from producers.connection import check_connection

    check_connection(s.kafka)
    return s


# -- broker ----------------------------------------------------------------------------------


@broker_app.command("start")
def broker_start() -> None:
    """Start the local broker (fetching the Kafka jars with Maven the first time)."""
    from consumers.broker import LocalBroker

    b = LocalBroker(settings().broker)
    if b.pid() is not None and b.is_up():
        out.print(f"broker already running at {b.bootstrap} (pid {b.pid()})")
        return
    out.print(f"starting Kafka {b.settings.version} (data in {b.data_dir}) ...")
    bootstrap = b.start()
    out.print(f"broker up at {bootstrap} (pid {b.pid()})")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the local broker started by `jobstream broker start`."""
    from consumers.broker import LocalBroker

    b = LocalBroker(settings().broker)
    out.print("broker stopped" if b.stop() else "no broker was running")


@broker_app.command("status")
def broker_status(
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No output; exit code only.")
    ] = False,
) -> None:
    """Say whether the local broker is up (exit 0) or not (exit 1)."""
    from consumers.broker import LocalBroker

    b = LocalBroker(settings().broker)
    pid = b.pid()
    up = b.is_up()
    if not quiet:
        if up:
            owner = f"pid {pid}" if pid else "not started by jobstream"
            out.print(f"up at {b.bootstrap} ({owner})")
        else:
            out.print(f"down (nothing answers at {b.bootstrap})")
    if not up:
        raise typer.Exit(1)


# -- topics ----------------------------------------------------------------------------------


def _job_types(s: Settings, given: list[str] | None) -> list[str]:
    from schemas.registry import SchemaRegistry

    known = SchemaRegistry.from_dirs(s.schema_dirs).job_types()
    wanted = given or sorted(set(known) | set(s.jobs))
    unknown = [jt for jt in wanted if jt not in known]
    if unknown:
        fail(f"unknown job type(s) {unknown}: no schema for them (known: {known})")
    return wanted


JobTypesOpt = Annotated[
    list[str] | None,
    typer.Option("--job-type", "-j", help="Limit to these job types (default: all with a schema)."),
]


@topics_app.command("apply")
def topics_apply(job_type: JobTypesOpt = None) -> None:
    """Create missing topics and align configs; refuse to change a partition count."""
    from consumers.topics import apply, full_plan

    s = settings()
    plan = full_plan(s, _job_types(s, job_type))
    states = apply(connected(s), plan)
    _topic_table(states)


@topics_app.command("describe")
def topics_describe(job_type: JobTypesOpt = None) -> None:
    """Show the topic plan next to the live state."""
    from consumers.topics import describe, full_plan

    s = settings()
    plan = full_plan(s, _job_types(s, job_type))
    _topic_table(describe(connected(s), plan))


def _topic_table(states: list[Any]) -> None:
    t = Table("topic", "role", "partitions", "state", "config")
    for st in states:
        parts = (
            f"{st.partitions}"
            if st.partitions == st.spec.partitions
            else (
                f"{st.partitions} (plan {st.spec.partitions})"
                if st.partitions
                else f"({st.spec.partitions})"
            )
        )
        cfg = ", ".join(f"{k}={v}" for k, v in st.spec.config.items())
        if st.drift:
            cfg += "  drift: " + ", ".join(f"{k} {a}->{b}" for k, (a, b) in st.drift.items())
        t.add_row(st.spec.name, st.spec.role, parts, st.action, cfg)
    out.print(t)


# -- schemas ---------------------------------------------------------------------------------


@schemas_app.command("check")
def schemas_check(
    app_module: Annotated[
        str | None, typer.Option("--app", help="Job module: also check its handlers.")
    ] = None,
) -> None:
    """Fail when a schema version cannot read the previous one's data, a field lacks a doc, or a
    registered job type lacks a schema, a timeout, bounded retries or a DLQ."""
    from consumers.admission import check_jobs
    from schemas.compat import check_registry
    from schemas.registry import SchemaRegistry

    s = settings()
    registry = SchemaRegistry.from_dirs(s.schema_dirs)
    problems = [str(p) for p in check_registry(registry)]
    app_module = app_module or s.app
    if app_module:
        from consumers.jobs import load_app

        problems += check_jobs(s, registry, load_app(app_module))
    for p in problems:
        err.print(f"[red]x[/red] {p}", highlight=False)
    if problems:
        fail(f"{len(problems)} problem(s) found")
    versions = sum(len(registry.versions(jt)) for jt in registry.job_types())
    out.print(f"ok: {len(registry.job_types())} job types, {versions} schema versions")


# -- publish ---------------------------------------------------------------------------------


@app.command("publish")
def publish(
    job_type: Annotated[str, typer.Argument(help="Job type, e.g. orders.confirmation.")],
    payload: Annotated[str, typer.Option("--json", help="The payload as a JSON object.")],
    key: Annotated[str | None, typer.Option(help="Partition key (default: the job id).")] = None,
    job_id: Annotated[
        str | None, typer.Option(help="Idempotency key (default: generated).")
    ] = None,
    parent_job_id: Annotated[str | None, typer.Option(help="Job that caused this one.")] = None,
) -> None:
    """Validate, encode and publish one job; prints its job id."""
    from producers.publisher import Publisher

    try:
        data = json.loads(payload)
    except json.JSONDecodeError as e:
        fail(f"--json is not valid JSON: {e}")
    if not isinstance(data, dict):
        fail("--json must be a JSON object")
    with Publisher.from_settings(connected(settings())) as pub:
        jid = pub.publish(job_type, data, key=key, job_id=job_id, parent_job_id=parent_job_id)
    out.print(jid, highlight=False)


# -- worker ----------------------------------------------------------------------------------


@app.command("worker")
def worker(
    app_module: Annotated[
        str | None, typer.Option("--app", help="Job module to import (or JOBSTREAM_APP).")
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Consumer group (default from settings).")
    ] = None,
    job_type: JobTypesOpt = None,
) -> None:
    """Run a worker: consume the job types' topics in a consumer group and run handlers. Exit
    codes: 0 stopped, 1 error, 3 fenced, 4 DLQ guard tripped, 5 worker.assignment differs from
    the group's, 6 a handler ended the process (os._exit). A job whose handler took the worker
    down worker.max_crashes times is dead-lettered as `crashed`."""
    from consumers.runner import run_worker

    s = settings()
    module = app_module or s.app
    if not module:
        fail("no job module: pass --app my.jobs or set JOBSTREAM_APP")
    raise typer.Exit(run_worker(connected(s), module, group=group, job_types=job_type))


def _mount_optional() -> None:
    """Sub-commands that live in their own modules."""
    try:
        from consumers.dlq_cli import audit_app, dlq_app
    except ImportError:
        return
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(audit_app, name="audit")


_mount_optional()


def _user_errors() -> tuple[type[BaseException], ...]:
    from confluent_kafka import KafkaException

    from consumers.broker import BrokerError
    from consumers.jobs import AppError
    from consumers.topics import TopicPlanError
    from producers.connection import ConnectionCheckError
    from producers.publisher import PayloadTooLarge, PublishError
    from schemas.registry import DecodeError, PayloadError, SchemaError, UnknownJobType

    return (
        CliError,
        SettingsError,
        BrokerError,
        ConnectionCheckError,
        AppError,
        TopicPlanError,
        PublishError,
        PayloadTooLarge,
        PayloadError,
        SchemaError,
        UnknownJobType,
        DecodeError,
        KafkaException,
    )


def main() -> None:
    try:
        rc = app(standalone_mode=False)  # returns the exit code instead of exiting
        sys.exit(rc if isinstance(rc, int) else 0)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as e:
        show = getattr(e, "show", None)  # usage errors of the CLI library: already worded well
        if callable(show) and hasattr(e, "exit_code"):
            show()
            sys.exit(e.exit_code)
        if isinstance(e, _user_errors()):
            # soft_wrap: one line however long; rich would otherwise break it at 80 columns
            # when stderr is not a terminal (a pod's log, a CI job).
            err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
            sys.exit(getattr(e, "code", 1))
        if os.environ.get("JOBSTREAM_DEBUG"):
            raise
        err.print(
            f"internal error: {type(e).__name__}: {e} (set JOBSTREAM_DEBUG=1 for a traceback)",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(70)


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy's: exception classes raised by
    # other modules (consumers.cli.CliError) must be the ones main() catches.
    from consumers.cli import main as _main

    _main()
