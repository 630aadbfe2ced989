"""One Settings object, read from the environment and `.env`, passed to everything else."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.crypto import TokenCipher
from core.errors import ConfigError

_PLACEHOLDERS = {"changeme", "change-me", "secret", "your-app-secret", "xxx", "todo"}


class Settings(BaseSettings):
    """Every knob of the service; names match the environment variables in the README."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///archiver.db"
    redis_url: str | None = None

    meta_app_secret: SecretStr | None = None
    # With META_APP_SECRET, the app token that debug_token needs to read token expiries.
    meta_app_id: str | None = None
    meta_verify_token: SecretStr | None = None
    threads_app_secret: SecretStr | None = None
    threads_verify_token: SecretStr | None = None
    token_encryption_key: SecretStr | None = None

    facebook_graph_url: str = "https://graph.facebook.com"
    instagram_graph_url: str = "https://graph.instagram.com"
    threads_graph_url: str = "https://graph.threads.net"
    graph_api_version: str = "v25.0"
    threads_api_version: str = "v1.0"

    story_poll_seconds: int = Field(900, gt=0)
    story_snapshot_seconds: int = Field(3600, gt=0)
    story_final_margin_seconds: int = Field(600, gt=0)
    threads_poll_seconds: int = Field(3600, gt=0)
    # Each Instagram account's own daily insights (README: Instagram account insights);
    # false spends no calls on them: ~16 an account-day, a new account's catch-up ~172.
    ig_account_insights: bool = True
    schedule_tick_seconds: int = Field(5, ge=1, le=60)
    # Threads post snapshots, counted from the post's timestamp, then weekly until the end.
    threads_post_snapshots: str = "1h,6h,24h,3d,7d,30d"
    threads_post_weekly_until: str = "90d"
    # Feed posts and Reels: /media listed this often; snapshots counted from each media's
    # timestamp, then every 30 days until IG_MEDIA_MAX_AGE.
    ig_media_poll_seconds: int = Field(3600, gt=0)
    ig_media_snapshots: str = "1h,3h,6h,12h,1d,2d,3d,7d,14d,30d"
    ig_media_max_age: str = "365d"
    token_refresh_days: float = Field(7.0, ge=1.0, le=50.0)
    # Meta's throttle estimates count minutes; the simulator (tests, demo) shortens them.
    meta_minute_seconds: float = Field(60.0, gt=0)

    # Retention, opt-in (README: Retention, `archiver prune`): unset, nothing is thinned or
    # dropped. Thinning keeps at most one intermediate version per subject and spacing window.
    prune_thin_after_days: int | None = Field(None, ge=1)
    prune_thin_spacing_hours: float = Field(24.0, gt=0)
    prune_raw_after_days: int | None = Field(None, ge=1)

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

    # Read by `accounts add` / `accounts threads` when no option names the token (automation):
    # a token on the command line is visible to every user of the machine (ps, /proc).
    archiver_ig_token: SecretStr | None = None
    archiver_threads_token: SecretStr | None = None

    # The receiver's socket limits (README: Security). Behind a proxy, keep the proxy's own
    # limits at or below these so that it, not the receiver, answers first.
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024)
    request_timeout_seconds: float = Field(10.0, gt=0, le=600)
    keepalive_timeout_seconds: int = Field(5, ge=1, le=600)
    max_connections: int = Field(1000, ge=2, le=1_000_000)
    # The ops listener (/metrics, detailed /readyz, /healthz); METRICS_PORT=0 turns it off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9100, ge=0, lt=65536)
    # Each `archiver worker` process's own /metrics (its work and the archive-wide gauges);
    # WORKER_METRICS_PORT=0 turns it off. `archiver run` serves all on METRICS_PORT instead.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(9101, ge=0, lt=65536)
    # `archiver dashboard`: read-only pages on a listener of their own, never the webhook port.
    # Beyond loopback it needs DASHBOARD_TOKEN (basic auth password or bearer token).
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(8001, gt=0, lt=65536)
    dashboard_token: SecretStr | None = None
    # Notices to operators (README: Notices): a Slack-compatible incoming webhook. Its URL
    # carries the secret, so it is a secret; unset, nothing is detected or sent.
    notify_webhook_url: SecretStr | None = None
    notify_token_days: float = Field(7.0, gt=0, le=60)
    notify_timeout_seconds: float = Field(10.0, gt=0, le=60)
    notify_max_attempts: int = Field(10, ge=1, le=30)

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

    @field_validator("token_encryption_key")
    @classmethod
    def _check_token_key(cls, value: SecretStr | None) -> SecretStr | None:
        """A bad key fails at start, not at the first token read."""
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            TokenCipher(value.get_secret_value())
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("TOKEN_ENCRYPTION_KEY ")) from None
        return value

    @field_validator("notify_webhook_url")
    @classmethod
    def _check_notify_url(cls, value: SecretStr | None) -> SecretStr | None:
        """An http(s) URL with a host, or unset; the message never quotes the value."""
        if value is None or not value.get_secret_value().strip():
            return None
        parts = urlsplit(value.get_secret_value().strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = "must be an http:// or https:// URL (a Slack-compatible incoming webhook)"
            raise ValueError(msg)
        return SecretStr(value.get_secret_value().strip())

    @field_validator("threads_post_snapshots", "ig_media_snapshots")
    @classmethod
    def _check_offsets(cls, value: str) -> str:
        offsets = [parse_duration(part) for part in value.split(",") if part.strip()]
        if not offsets:
            msg = "needs at least one duration, e.g. 1h,6h,24h"
            raise ValueError(msg)
        return value

    @field_validator("threads_post_weekly_until", "ig_media_max_age")
    @classmethod
    def _check_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def post_snapshot_offsets(self) -> list[int]:
        """THREADS_POST_SNAPSHOTS in seconds, sorted, then weekly to THREADS_POST_WEEKLY_UNTIL."""
        offsets = sorted({parse_duration(p) for p in self.threads_post_snapshots.split(",") if p})
        until, week = parse_duration(self.threads_post_weekly_until), 7 * 86400
        while offsets[-1] + week <= until:
            offsets.append(offsets[-1] + week)
        return offsets

    @property
    def media_snapshot_offsets(self) -> list[int]:
        """IG_MEDIA_SNAPSHOTS in seconds, sorted, then every 30 days to IG_MEDIA_MAX_AGE."""
        offsets = sorted({parse_duration(p) for p in self.ig_media_snapshots.split(",") if p})
        until, month = parse_duration(self.ig_media_max_age), 30 * 86400
        offsets = [offset for offset in offsets if offset <= until] or offsets[:1]
        while offsets[-1] + month <= until:
            offsets.append(offsets[-1] + month)
        return offsets

    @property
    def token_key(self) -> str | None:
        """TOKEN_ENCRYPTION_KEY for models.db.create_db_engine (None: tokens in plaintext)."""
        key = self.token_encryption_key
        return key.get_secret_value() if key is not None and key.get_secret_value() else None

    @property
    def notify_secrets(self) -> list[str]:
        """NOTIFY_WEBHOOK_URL and its path and query (Slack's secret part), to mask wherever
        either might appear: an error quoting the URL, a log line, a stored error."""
        if self.notify_webhook_url is None:
            return []
        url = self.notify_webhook_url.get_secret_value()
        parts = urlsplit(url)
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        return [url, tail] if len(tail) > 1 else [url]

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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """`90s`, `15m`, `6h`, `3d`, `2w` (or plain seconds) to seconds; ValueError otherwise."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:])
    number = value[:-1] if unit else value
    if not number.isdigit():
        msg = f"{text!r} is not a duration like 90s, 15m, 6h, 3d or 2w"
        raise ValueError(msg)
    return int(number) * (unit or 1)


def format_duration(seconds: int) -> str:
    """The shortest exact label: 3600 -> `1h`, 259200 -> `3d`, 90 -> `90s`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


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
