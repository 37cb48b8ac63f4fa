"""The `jobstream` command line: one module per command group, one error handler
(consumers/cli/errors.py). User mistakes end in one clear line and a non-zero exit. Every
command's help ends in an "Example:" line (tests/unit/test_cli_help.py walks them all)."""

from __future__ import annotations

from typing import Annotated

import typer

from jobstream.consumers.cli.audit import audit_app
from jobstream.consumers.cli.batches import batches_app
from jobstream.consumers.cli.broker import broker_app
from jobstream.consumers.cli.dlq import dlq_app
from jobstream.consumers.cli.errors import run_app
from jobstream.consumers.cli.jobs import jobs_app
from jobstream.consumers.cli.publish import publish
from jobstream.consumers.cli.schedules import schedules_app
from jobstream.consumers.cli.schemas import schemas_app
from jobstream.consumers.cli.topics import topics_app
from jobstream.consumers.cli.ui import ui
from jobstream.consumers.cli.worker import worker

app = typer.Typer(
    help="Background jobs on Kafka.", no_args_is_help=True, add_completion=False,
    epilog="Example: jobstream worker --app myservice.jobs",
)


def _print_version(value: bool) -> None:
    if value:
        from jobstream import __version__

        typer.echo(f"jobstream {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True,
            help="Print the version of the jobstream distribution and exit.",
        ),
    ] = False,
) -> None:
    """Background jobs on Kafka."""


app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(dlq_app, name="dlq")
app.add_typer(audit_app, name="audit")
app.add_typer(jobs_app, name="jobs")
app.add_typer(schedules_app, name="schedules")
app.add_typer(batches_app, name="batches")
app.command(
    "publish",
    epilog="Example: jobstream publish orders.confirmation --key o-1 "
    "--json '{\"order_id\": \"o-1\", \"email\": \"a@example.com\", \"total_cents\": 1999}'",
)(publish)
app.command(
    "worker", epilog="Example: jobstream worker --app myservice.jobs -j orders.confirmation"
)(worker)

app.command("ui", epilog="Example: jobstream ui --host 127.0.0.1 --port 8400")(ui)


def main() -> None:
    run_app(app)
