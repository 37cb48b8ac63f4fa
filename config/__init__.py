"""jobstream settings, topic naming and logging set-up."""

from jobstream.config.settings import (
    JobTypeSettings,
    KafkaSettings,
    Mode,
    Ordering,
    Settings,
    SettingsError,
    WorkerSettings,
    load_settings,
)

__all__ = [
    "JobTypeSettings",
    "KafkaSettings",
    "Mode",
    "Ordering",
    "Settings",
    "SettingsError",
    "WorkerSettings",
    "load_settings",
]
