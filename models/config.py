"""One Settings object, read from the environment and `.env`, passed to everything else."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.errors import ConfigError

_PLACEHOLDERS = {"changeme", "change-me", "secret", "your-app-secret", "xxx", "todo"}


class Settings(BaseSettings):
    """Every knob of the service; names match the environment variables in the README."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///archiver.db"
    redis_url: str | None = None

    meta_app_secret: SecretStr | None = None
    meta_verify_token: SecretStr | None = None
    threads_app_secret: SecretStr | None = None
    threads_verify_token: SecretStr | None = None

    facebook_graph_url: str = "https://graph.facebook.com"
    instagram_graph_url: str = "https://graph.instagram.com"
    threads_graph_url: str = "https://graph.threads.net"
    graph_api_version: str = "v25.0"

    story_poll_seconds: int = Field(900, gt=0)
    story_snapshot_seconds: int = Field(3600, gt=0)
    story_final_margin_seconds: int = Field(600, gt=0)
    threads_poll_seconds: int = Field(3600, gt=0)
    schedule_tick_seconds: int = Field(5, ge=1, le=60)
    # Meta's throttle estimates count minutes; the simulator (tests, demo) shortens them.
    meta_minute_seconds: float = Field(60.0, gt=0)

    max_body_bytes: int = Field(1024 * 1024, gt=0)
    ingest_timeout_seconds: float = Field(10.0, gt=0)
    relay_interval_seconds: float = Field(1.0, gt=0)
    sweep_after_seconds: int = Field(300, gt=0)
    job_timeout_seconds: int = Field(300, gt=0)
    worker_max_jobs: int = Field(10, gt=0)

    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        """Accept the `postgres://` URLs that hosting platforms hand out; use psycopg 3."""
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @field_validator("meta_app_secret", "meta_verify_token", "threads_app_secret")
    @classmethod
    def _refuse_placeholders(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in _PLACEHOLDERS:
            msg = "is a placeholder; set the real value from the Meta App Dashboard"
            raise ValueError(msg)
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def require_receiver_secrets(self) -> None:
        """The receiver fails closed: without both secrets it cannot verify anything."""
        missing = [
            name
            for name, value in (
                ("META_APP_SECRET", self.meta_app_secret),
                ("META_VERIFY_TOKEN", self.meta_verify_token),
            )
            if value is None
        ]
        if missing:
            msg = f"{' and '.join(missing)} must be set to receive webhooks (see README: Settings)"
            raise ConfigError(msg)


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning pydantic's validation report into one readable ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        msg = f"invalid settings: {problems}"
        raise ConfigError(msg) from None


@lru_cache
def get_settings() -> Settings:
    """Entry points only: everything else takes Settings as an argument."""
    return load_settings()
