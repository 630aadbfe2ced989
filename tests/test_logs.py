"""Logging setup: secrets never reach the output, and JSON lines are valid JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from archiver.logs import setup_logging
from core.errors import ConfigError
from core.redaction import MASK, RedactingFilter, scrub
from tests.conftest import APP_SECRET, make_settings

FB_TOKEN = "EAABsbCS1iHgBAKZCZCw9ZBZCZBWZCZAZBQ1x2y3z4"
IG_TOKEN = "IGQVJWd0FfZA2xsZAmRfbU9ZSXc4blZAxMnVsc"
THREADS_TOKEN = "THQVJYeUk4NWpZAXZAqQ2xRLWFzbmFjZA1BlU"
SIGNATURE = "sha256=" + "ab12" * 16


@pytest.fixture
def restore_root() -> Iterator[None]:
    """setup_logging replaces the root handlers; give pytest its own back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def emit(logger: logging.Logger, *, fmt: str = "text") -> tuple[io.StringIO, logging.Logger]:
    stream = io.StringIO()
    settings = make_settings("sqlite://", None, log_format=fmt, log_level="DEBUG")
    setup_logging(settings, stream=stream)
    return stream, logger


def filtered(msg: str, *args: object) -> str:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, msg, args or None, None)
    RedactingFilter().filter(record)
    return record.getMessage()


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        (f"GET /v25.0/me?fields=id&access_token={FB_TOKEN}&limit=5", FB_TOKEN),
        (f"refresh with client_secret=abc123def456&grant_type=x {IG_TOKEN}", "abc123def456"),
        (f"bare Facebook token {FB_TOKEN} in text", FB_TOKEN),
        (f"bare Instagram token {IG_TOKEN}.", IG_TOKEN),
        (f"bare Threads token {THREADS_TOKEN}", THREADS_TOKEN),
        (f"X-Hub-Signature-256: {SIGNATURE}", SIGNATURE[7:]),
        (f"{{'ig_token': '{IG_TOKEN[:6]}x'}}", IG_TOKEN[:6] + "x"),
        ('{"access_token": "shortbutsecret"}', "shortbutsecret"),
        ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
    ],
)
def test_filter_masks_tokens_in_messages(message: str, secret: str) -> None:
    """Tokens, secrets and signatures written into the message itself are masked."""
    masked = filtered(message)
    assert secret not in masked
    assert MASK in masked


def test_filter_masks_tokens_passed_as_lazy_args() -> None:
    """A token handed over as a %s argument is masked once the message is rendered."""
    masked = filtered("calling %s with %s then %s", "/me", FB_TOKEN, SIGNATURE)
    assert FB_TOKEN not in masked
    assert SIGNATURE[7:] not in masked
    assert masked.startswith("calling /me with ")


def test_filter_masks_mapping_args() -> None:
    """The `%(name)s` form with a mapping argument is masked too."""
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "token=%(tok)s", ({"tok": THREADS_TOKEN},), None
    )
    RedactingFilter().filter(record)
    assert THREADS_TOKEN not in record.getMessage()


def test_filter_leaves_ordinary_text_alone() -> None:
    """Setting names, ids and timestamps are not mistaken for tokens."""
    text = "THREADS_APP_SECRET unset; media 18023345989012587 at 2026-03-01T00:00:00Z THE END"
    assert scrub(text) == text


def test_known_secret_values_are_masked_everywhere(restore_root: None) -> None:
    """The configured app secret is masked even where it matches no token pattern."""
    stream, logger = emit(logging.getLogger("test.secret"))
    logger.warning("the secret is %s", APP_SECRET)
    assert APP_SECRET not in stream.getvalue()
    assert MASK in stream.getvalue()


def test_tracebacks_are_masked(restore_root: None) -> None:
    """An exception whose message carries a token is logged without it."""
    stream, logger = emit(logging.getLogger("test.exc"))
    try:
        raise RuntimeError(f"GET https://graph.facebook.com/me?access_token={FB_TOKEN} failed")
    except RuntimeError:
        logger.exception("request failed")
    output = stream.getvalue()
    assert "RuntimeError" in output
    assert FB_TOKEN not in output


def test_json_format_emits_one_valid_object_per_line(restore_root: None) -> None:
    """LOG_FORMAT=json: every line parses, carries level/logger/message and `extra` ids."""
    stream, logger = emit(logging.getLogger("test.json"), fmt="json")
    logger.info("delivery %d stored", 7, extra={"delivery_id": 7})
    logger.warning('odd "quotes" and\nnewlines with %s', IG_TOKEN)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    lines = stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 3
    assert entries[0]["message"] == "delivery 7 stored"
    assert entries[0]["delivery_id"] == 7
    assert entries[0]["level"] == "INFO"
    assert entries[0]["logger"] == "test.json"
    assert IG_TOKEN not in lines[1]
    assert "ValueError: boom" in entries[2]["exc"]


def test_level_is_applied_and_invalid_level_refused(restore_root: None) -> None:
    """LOG_LEVEL sets the root level; a name that is no level is a ConfigError."""
    setup_logging(make_settings("sqlite://", None, log_level="warning"), stream=io.StringIO())
    assert logging.getLogger().level == logging.WARNING
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        setup_logging(make_settings("sqlite://", None, log_level="LOUD"))
