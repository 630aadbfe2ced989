"""What /debug_token says about a Facebook Login token, parsed (pure: dict in, value out).

https://developers.facebook.com/docs/graph-api/reference/debug_token: `data.expires_at` and
`data.data_access_expires_at` are Unix times, `expires_at` 0 for a token that never expires
(a long-lived Page token); `is_valid` false, with `data.error`, for a token that is dead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.redaction import scrub
from workers.meta.api_errors import Transient


@dataclass(frozen=True)
class TokenInfo:
    """A token's expiry (None: never) and data-access expiry (None: never or not given)."""

    is_valid: bool
    expires_at: datetime | None
    data_access_expires_at: datetime | None
    error: str | None = None


def _moment(value: Any) -> datetime | None:
    """A positive Unix time; 0 (never) and anything else are None."""
    number = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return datetime.fromtimestamp(value, UTC) if number else None


def parse_token_info(body: Mapping[str, Any]) -> TokenInfo:
    """debug_token's answer; one without `data`, or a valid token without an `expires_at`,
    is an answer gone wrong (Transient: asked again later), never a token that lives forever."""
    data = body.get("data")
    if not isinstance(data, dict):
        msg = "debug_token answered without `data`"
        raise Transient(msg)
    valid = data.get("is_valid") is True
    expires = data.get("expires_at")
    if valid and (not isinstance(expires, int) or isinstance(expires, bool)):
        msg = "debug_token answered without `expires_at` for a valid token"
        raise Transient(msg)
    error = data.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return TokenInfo(
        is_valid=valid,
        expires_at=_moment(expires),
        data_access_expires_at=_moment(data.get("data_access_expires_at")),
        error=None if valid else scrub(str(message or "the token is not valid")),
    )
