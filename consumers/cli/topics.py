"""`jobstream topics apply|describe`: the topic plan of every job type against the cluster."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from jobstream.config.settings import Settings
from jobstream.consumers.cli.common import connected, fail, settings
from jobstream.consumers.cli.dlq import _print_table

topics_app = typer.Typer(
    help="Create, check and show the topics of every job type.", no_args_is_help=True,
    epilog="Example: jobstream topics apply",
)


def _job_types(s: Settings, given: list[str] | None) -> list[str]:
    from jobstream.schemas.registry import SchemaRegistry

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


@topics_app.command("apply", epilog="Example: jobstream topics apply -j orders.confirmation")
def topics_apply(job_type: JobTypesOpt = None) -> None:
    """Create missing topics and align configs; refuse to change a partition count."""
    from jobstream.consumers.ops.topic_plan import apply, full_plan

    s = settings()
    plan = full_plan(s, _job_types(s, job_type))
    states = apply(connected(s), plan)
    _topic_table(states)


@topics_app.command(
    "describe", epilog="Example: jobstream topics describe --job-type orders.confirmation"
)
def topics_describe(job_type: JobTypesOpt = None) -> None:
    """Show the topic plan next to the live state."""
    from jobstream.consumers.ops.topic_plan import describe, full_plan

    s = settings()
    plan = full_plan(s, _job_types(s, job_type))
    _topic_table(describe(connected(s), plan))


def _topic_table(states: list[Any]) -> None:
    t = Table("topic", "role", "partitions", "state", "config")
    t.columns[0].no_wrap = True  # a topic name is copied from here: never cut or wrapped
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
    _print_table(t)
