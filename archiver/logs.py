"""Logging for every command: one stderr handler, text or JSON lines, secrets masked.

The mask (core.redaction.RedactingFilter, the one scrubber) sits on the handler, not on a
logger, so it sees every record of every library (httpx URLs with `access_token=`, arq job
reprs, uvicorn errors) before anything is written.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from archiver import quiet_logs
from core.config import Settings
from core.errors import ConfigError
from core.redaction import RECORD_ATTRS, RedactingFilter

# Extras a library adds for its own console output, not for a log line (uvicorn's is ANSI).
NOT_FIELDS = frozenset({"color_message"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, any `extra` ids, exc; no
    terminal colour codes (a log collector would store them as text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": quiet_logs.strip_ansi(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in RECORD_ATTRS and key not in NOT_FIELDS and not key.startswith("_"):
                entry[key] = quiet_logs.strip_ansi(value) if isinstance(value, str) else value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = quiet_logs.strip_ansi(record.exc_text)
        return json.dumps(entry, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that narrate routine steps at INFO; they speak up from WARNING unless debugging.
CHATTY = ("alembic", "httpx")
# Libraries that may have been given their own (coloured) handlers by an earlier
# uvicorn.Config(log_config=...) in this process, or a level: they write through ours.
OWN_HANDLERS = ("uvicorn", "uvicorn.error")  # not .access: ours never log requests


def _level(name: str) -> int:
    level = logging.getLevelName(name.strip().upper())
    if not isinstance(level, int):
        msg = f"LOG_LEVEL {name!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)"
        raise ConfigError(msg)
    return level


def known_secrets(settings: Settings) -> list[str]:
    """The secret values in `settings`, masked verbatim wherever they might appear."""
    values = (
        settings.meta_app_secret,
        settings.meta_verify_token,
        settings.threads_app_secret,
        settings.threads_verify_token,
    )
    found = [value.get_secret_value() for value in values if value is not None]
    return found + settings.notify_secrets


def setup_logging(settings: Settings, *, stream: IO[str] | None = None) -> logging.Handler:
    """Route every logger to one stderr handler in LOG_FORMAT at LOG_LEVEL; return it."""
    level = _level(settings.log_level)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter(known_secrets(settings)))
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    quiet_logs.install()
    for name in OWN_HANDLERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING if level > logging.DEBUG else level)
    return handler
