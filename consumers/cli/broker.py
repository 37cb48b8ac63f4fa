"""`jobstream broker start|stop|status`: a local single-node Apache Kafka for development
and tests (consumers/broker.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from jobstream.consumers.cli.common import out, settings

broker_app = typer.Typer(
    help="A local single-node Apache Kafka for development and tests.", no_args_is_help=True,
    epilog="Example: JOBSTREAM_BROKER__PORT=9092 jobstream broker start",
)


@broker_app.command("start", epilog="Example: jobstream broker start")
def broker_start() -> None:
    """Start the local broker (fetching the Kafka jars with Maven the first time)."""
    from jobstream.consumers.broker import LocalBroker

    b = LocalBroker(settings().broker)
    if b.pid() is not None and b.is_up():
        out.print(f"broker already running at {b.bootstrap} (pid {b.pid()})")
        return
    out.print(f"starting Kafka {b.settings.version} (data in {b.data_dir}) ...")
    bootstrap = b.start()
    out.print(f"broker up at {bootstrap} (pid {b.pid()})")


@broker_app.command("stop", epilog="Example: jobstream broker stop")
def broker_stop() -> None:
    """Stop the local broker started by `jobstream broker start`: only one that runs from this
    data dir and listens on the configured port (JOBSTREAM_BROKER__DATA_DIR, __PORT)."""
    from jobstream.consumers.broker import LocalBroker

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


@broker_app.command("status", epilog="Example: jobstream broker status --quiet")
def broker_status(
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No output; exit code only.")
    ] = False,
) -> None:
    """Say whether the local broker is up (exit 0) or not (exit 1)."""
    from jobstream.consumers.broker import LocalBroker

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
