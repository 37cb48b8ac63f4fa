"""The `jobstream` command line. User mistakes end in one clear line and a non-zero exit."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from config.settings import Settings, load_settings
from consumers.cli_errors import fail, run_app

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
    """Stop the local broker started by `jobstream broker start`: only one that runs from this
    data dir and listens on the configured port (JOBSTREAM_BROKER__DATA_DIR, __PORT)."""
    from consumers.broker import LocalBroker

    b = LocalBroker(settings().broker)
    pid = b.verified_pid()  # raises, naming the process, when it is another broker
    if pid is None:
        b.stop()  # clears a stale pid file
        other = f"; something else answers at {b.bootstrap}, left alone" if b.is_up() else ""
        out.print(
            f"no broker was running from {b.data_dir}{other}", highlight=False, soft_wrap=True
        )
        return
    out.print(f"stopping the broker at {b.bootstrap} (pid {pid}, data in {b.data_dir}) ...",
              highlight=False, soft_wrap=True)
    b.stop()
    out.print("broker stopped")


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
    """Fail when a schema version cannot read the data of any older version (Avro's rules and
    fastavro's reader), a field lacks a doc, or a registered job type lacks a schema, a
    timeout, bounded retries or a DLQ."""
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
    from producers.errors import check_id
    from producers.publisher import Publisher

    data = _json_object(payload, "--json")
    # Local checks before connecting: a wrong id must not wait out a broker timeout first.
    for option, value in (("--job-id", job_id), ("--parent-job-id", parent_job_id)):
        if value is not None:
            try:
                check_id(option, value)
            except ValueError as e:
                fail(str(e))
    if key is not None and not _is_unicode(key):
        fail(f"--key holds a lone surrogate, which is not valid Unicode: {key!a}")
    with Publisher.from_settings(connected(settings())) as pub:
        jid = pub.publish(job_type, data, key=key, job_id=job_id, parent_job_id=parent_job_id)
    out.print(jid, highlight=False)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_object(text: str, option: str) -> dict[str, Any]:
    """A JSON object given on the command line, or one error line naming the option."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"{option} is not valid JSON: {e}")
    except RecursionError:
        fail(f"{option} is nested too deeply to be a job payload")
    if not isinstance(data, dict):
        fail(f"{option} must be a JSON object")
    # A lone surrogate (a \ud800 escape, or argument bytes that are not UTF-8) parses but
    # cannot be encoded. Iterative: the JSON may be nested almost to the recursion limit.
    stack: list[tuple[str, Any]] = [("payload", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str) and not _is_unicode(value):
            fail(f"{option}: {path} holds a lone surrogate, which is not valid Unicode: "
                 f"{value!a} (a \\ud800-style escape, or bytes that are not UTF-8)")
        if isinstance(value, dict):
            for k, v in value.items():
                if not _is_unicode(k):
                    fail(f"{option}: the key {k!a} in {path} is not valid Unicode")
                stack.append((f"{path}.{k}", v))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
    return data


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
    """Run a worker: consume the job types' topics in a consumer group and run handlers.

    Exit codes:

    0  stopped by SIGTERM or SIGINT (what was running finished and was committed)

    1  error: settings, the job module (import failed, no handlers), HTTP port, brokers

    3  fenced: another worker took over this one's partitions

    4  the DLQ guard tripped (worker.dlq_guard)

    5  worker.assignment differs from the strategy of the group's running members

    6  a handler ended the process (os._exit); a job whose handler took the worker down
    worker.max_crashes times is dead-lettered as `crashed`

    70  internal error in jobstream itself (JOBSTREAM_DEBUG=1 shows the traceback)

    130  a second signal: exited at once
    """
    from consumers.runner import run_worker

    s = settings()
    module = app_module or s.app
    if not module:
        fail("no job module: pass --app my.jobs or set JOBSTREAM_APP")
    # run_worker checks the connection itself, after the local checks (job module, HTTP port).
    raise typer.Exit(run_worker(s, module, group=group, job_types=job_type))


def _mount_optional() -> None:
    """Sub-commands that live in their own modules."""
    try:
        from consumers.dlq_cli import audit_app, dlq_app
    except ImportError:
        return
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(audit_app, name="audit")


_mount_optional()


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    # One copy of the CLI: run the importable module's main, not this __main__ copy's.
    from consumers.cli import main as _main

    _main()
