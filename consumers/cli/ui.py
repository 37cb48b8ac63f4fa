"""`jobstream ui`: serve the operator console (consumers/ui/)."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from jobstream.consumers.cli.common import fail, settings


def ui(
    host: Annotated[str | None, typer.Option(
        help="Address to listen on (default ui.host, 127.0.0.1). Another address exposes the "
             "read-only pages to that network.")] = None,
    port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="Port to listen on (default ui.port, 8400).")] = None,
) -> None:
    """Serve the operator console: job types, lag, dead letters (browse, replay, unmask) and the
    audit trail. Read-only without credentials; write actions need a user from
    ui.auth.passwords (basic auth) or ui.auth.tokens (bearer) and are audited."""
    s = settings()
    h, p = host or s.ui.host, port or s.ui.port
    try:  # a clear line for a taken port, instead of the server's own error
        with socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((h, p))
    except OSError as e:
        fail(f"cannot listen on {h}:{p}: {e.strerror}")
    from jobstream.consumers.ui.app import serve

    mode = ("write actions need sign-in" if s.ui.auth.passwords or s.ui.auth.tokens
            else "read-only: no ui.auth credentials")
    typer.echo(f"serving the console on http://{h}:{p}/ ({mode})")
    serve(s, h, p)
