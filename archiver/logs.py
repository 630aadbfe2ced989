"""Logging for every command: one stderr handler, text or JSON lines, secrets masked.

The mask sits on the handler, not on a logger, so it sees every record of every library
(httpx URLs with `access_token=`, arq job reprs, uvicorn errors) before anything is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any

from core.config import Settings
from core.errors import ConfigError

MASK = "[REDACTED]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Query strings and form bodies: access_token=..., client_secret=..., fb_exchange_token=...
    (
        re.compile(
            r"(?i)\b((?:access|fb_exchange|refresh|input)_token|client_secret|appsecret_proof"
            r"|verify_token|hub\.verify_token)=[^&\s\"'<>]+"
        ),
        rf"\1={MASK}",
    ),
    # JSON and reprs: "access_token": "...", 'ig_token': '...'
    (
        re.compile(
            r"(?i)([\"']?(?:\w*token|\w*secret|x-hub-signature(?:-256)?)[\"']?\s*[:=]\s*)"
            r"[\"'][^\"']*[\"']"
        ),
        rf"\1'{MASK}'",
    ),
    # Signature headers: sha256=<hex>, sha1=<hex>
    (re.compile(r"(?i)\b(sha(?:256|1))=[0-9a-f]{8,}"), rf"\1={MASK}"),
    (re.compile(r"(?i)\b(bearer|oauth)\s+[A-Za-z0-9._~+/-]{8,}=*"), rf"\1 {MASK}"),
    # Bare Meta tokens: Facebook (EAA...), Instagram Login (IGQ..., IGAA...), Threads (TH...).
    # They are long and mixed-case, unlike constants such as THREADS_APP_SECRET.
    (re.compile(r"\b(?:EAA|IGQ|IGAA|TH)(?=[A-Za-z0-9_-]*[a-z])[A-Za-z0-9_-]{20,}"), MASK),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with known secret values and anything shaped like a token masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks tokens, secrets and signatures in the message, its args and the traceback.

    The message is rendered once here (args merged in) so a token passed as a lazy `%s`
    argument is caught too; the record is then passed on with no args left to merge.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad %-args: still mask what there is
            message = f"{record.msg} {record.args}"
        record.msg = redact(message, self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, any `extra` ids, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that narrate routine steps at INFO; they speak up from WARNING unless debugging.
CHATTY = ("alembic", "httpx")


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
    return [value.get_secret_value() for value in values if value is not None]


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
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING if level > logging.DEBUG else level)
    return handler
