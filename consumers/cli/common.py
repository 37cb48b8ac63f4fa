"""What every command shares: the consoles, the settings, the connection check."""

from __future__ import annotations

from rich.console import Console

from jobstream.config.settings import Settings, load_settings
from jobstream.consumers.cli.errors import fail

__all__ = ["connected", "err", "fail", "out", "settings"]

out = Console()
err = Console(stderr=True)


def settings() -> Settings:
    return load_settings()


def connected(s: Settings) -> Settings:
    """Fail fast with one line when the brokers refuse these settings (wrong password, untrusted
    or missing certificate): librdkafka itself would retry such failures for ever."""
    from jobstream.producers.connection import check_connection

    check_connection(s.kafka)
    return s
