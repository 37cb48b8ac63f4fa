"""The `ui` section: the operator console served by `jobstream ui` (consumers/ui/)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UiAuthSettings(_Model):
    """Who may use the console's write actions (replay, unmask); without any entry it is
    read-only for everyone."""

    passwords: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Basic-auth users: user name -> password. Keep it in a Secret "
        "(`JOBSTREAM_UI__AUTH__PASSWORDS` as JSON, or the Helm chart's `console.authSecret`).",
    )
    tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Bearer tokens: user name -> token, sent as `Authorization: Bearer <token>`.",
    )


class UiSettings(_Model):
    """The operator console (`jobstream ui`)."""

    host: str = Field("127.0.0.1", description="Address the console listens on.")
    port: int = Field(8400, ge=1, le=65535, description="Port the console listens on.")
    auth: UiAuthSettings = Field(
        UiAuthSettings(), description="Credentials for write actions (a Secret)."
    )
    workers: tuple[str, ...] = Field(
        (),
        description="The workers' /metrics addresses to scrape, e.g. "
        "`[\"http://10.0.0.5:9000/metrics\"]`; empty shows no worker figures.",
    )
    scrape_timeout_s: float = Field(
        0.5, gt=0, le=10, description="How long one worker's /metrics may take to answer."
    )
    cache_s: float = Field(
        2.0, ge=0, le=60,
        description="How long Kafka figures are reused between page loads (0: never).",
    )

    @field_validator("workers")
    @classmethod
    def _urls(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for url in v:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"expected http:// or https:// addresses, got {url!r}")
        return v
