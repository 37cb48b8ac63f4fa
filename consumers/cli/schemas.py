"""`jobstream schemas check`: schema compatibility and the admission check of job definitions."""

from __future__ import annotations

from typing import Annotated

import typer

from jobstream.consumers.cli.common import err, fail, out, settings

schemas_app = typer.Typer(
    help="Check the Avro schemas and job definitions.", no_args_is_help=True,
    epilog="Example: jobstream schemas check --app myservice.jobs",
)


@schemas_app.command("check", epilog="Example: jobstream schemas check --app myservice.jobs")
def schemas_check(
    app_module: Annotated[
        str | None, typer.Option("--app", help="Job module: also check its handlers.")
    ] = None,
) -> None:
    """Fail when a schema version cannot read the data of any older version (Avro's rules and
    fastavro's reader), a field lacks a doc, or a registered job type lacks a schema, a
    timeout, bounded retries or a DLQ."""
    from jobstream.consumers.ops.admission import check_jobs
    from jobstream.schemas.compat import check_registry
    from jobstream.schemas.registry import SchemaRegistry

    s = settings()
    registry = SchemaRegistry.from_dirs(s.schema_dirs)
    problems = [str(p) for p in check_registry(registry)]
    app_module = app_module or s.app
    if app_module:
        from jobstream.consumers.jobs import load_app

        problems += check_jobs(s, registry, load_app(app_module))
    for p in problems:
        err.print(f"[red]x[/red] {p}", highlight=False)
    if problems:
        fail(f"{len(problems)} problem(s) found")
    versions = sum(len(registry.versions(jt)) for jt in registry.job_types())
    out.print(f"ok: {len(registry.job_types())} job types, {versions} schema versions")
