"""The `jobstream` command line: one module per command group, one error handler
(consumers/cli/errors.py). User mistakes end in one clear line and a non-zero exit."""

from __future__ import annotations

import typer

from jobstream.consumers.cli.audit import audit_app
from jobstream.consumers.cli.broker import broker_app
from jobstream.consumers.cli.dlq import dlq_app
from jobstream.consumers.cli.errors import run_app
from jobstream.consumers.cli.publish import publish
from jobstream.consumers.cli.schemas import schemas_app
from jobstream.consumers.cli.topics import topics_app
from jobstream.consumers.cli.worker import worker

app = typer.Typer(help="Background jobs on Kafka.", no_args_is_help=True, add_completion=False)
app.add_typer(broker_app, name="broker")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(dlq_app, name="dlq")
app.add_typer(audit_app, name="audit")
app.command("publish")(publish)
app.command("worker")(worker)


def main() -> None:
    run_app(app)
