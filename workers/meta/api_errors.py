"""The Meta error tree and the one function that maps a Graph API error response onto it
(the usage headers that errors and the pacer read are parsed in workers.meta.usage).

Rules come from https://developers.facebook.com/docs/graph-api/guides/error-handling and
https://developers.facebook.com/docs/graph-api/overview/rate-limiting. Every message is
scrubbed (core.redaction) before it is stored on an exception: Meta's messages may quote a
token back.

`MetaError.retryable` says whether trying the same call again can ever succeed: True for
Throttled (after its pause) and Transient, False for AuthError and every ClientError
(PermissionDenied, a (#100) about the account or its objects, ...), which need someone to act
(re-authorise, grant a permission) and should be backed off and shown, not retried.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from core.errors import ArchiverError
from core.redaction import scrub
from workers.meta.usage import parse_buc_usage

# Codes that mean "stop calling for a while": app, user, page, custom, BUC limits
# (https://developers.facebook.com/docs/graph-api/overview/rate-limiting). Code 4 is the
# application's own limit: every account of the app must stop, not just the one that hit it.
APP_THROTTLE_CODE = 4
THROTTLE_CODES = frozenset({APP_THROTTLE_CODE, 17, 32, 341, 613})
BUC_THROTTLE_CODES = range(80000, 80100)  # 80001 Pages, 80002 Instagram, 80006 Messenger ...
TRANSIENT_CODES = frozenset({1, 2})
AUTH_CODES = frozenset({102, 190})
AUTH_SUBCODES = {
    458: "app not installed",
    459: "user checkpointed",
    460: "password changed",
    463: "token expired",
    464: "unconfirmed user",
    467: "invalid access token",
    492: "invalid session",
}
DEFAULT_THROTTLE_MINUTES = 5.0
DEFAULT_TRANSIENT_RETRY_SECONDS = 60.0

_NOT_ENOUGH_VIEWERS = "not enough viewers"
FEATURE_NOT_AVAILABLE = "THREADS_API__FEATURE_NOT_AVAILABLE"
_ONE_OF = re.compile(r"must be one of the following values:\s*(?P<values>.*)", re.IGNORECASE)


class MetaError(ArchiverError):
    """A call to a Meta API failed; `retry_after` (seconds) is None when retrying cannot help."""

    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        is_transient: bool = False,
        fbtrace_id: str | None = None,
        http_status: int | None = None,
        error_type: str | None = None,
    ) -> None:
        self.message = scrub(message)
        self.code = code
        self.subcode = subcode
        self.is_transient = is_transient
        self.fbtrace_id = fbtrace_id
        self.http_status = http_status
        self.error_type = error_type
        super().__init__(self.message)

    @property
    def retryable(self) -> bool:
        """Whether the same call can succeed later (Throttled, Transient); False means only
        a person can fix it (a token, a permission, a bad id): back off and flag instead."""
        return self.retry_after is not None

    def redact(self, *secrets: str | None) -> None:
        """Remove known secrets (the token of the failed call) from the stored message."""
        self.message = scrub(self.message, secrets)
        self.args = (self.message,)

    def __str__(self) -> str:
        parts = [f"code={self.code}"] if self.code is not None else []
        if self.subcode is not None:
            parts.append(f"subcode={self.subcode}")
        if self.http_status is not None:
            parts.append(f"http={self.http_status}")
        if self.fbtrace_id:
            parts.append(f"fbtrace_id={self.fbtrace_id}")
        return f"{self.message} ({', '.join(parts)})" if parts else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class Throttled(MetaError):
    """A rate limit was hit: no call for this account until `retry_after` seconds have passed."""

    retry_after: float

    def __init__(self, message: str, *, retry_after: float, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retry_after = retry_after


class AppThrottled(Throttled):
    """(#4) Application request limit reached: the whole app (every account, every worker)
    waits `retry_after` seconds, not only the account whose call hit it."""


class AccountPaused(Throttled):
    """The shared pacer holds this account (or the app); raised before any request is sent.
    `account` is the pacer key that holds it (`ig:<id>`, or `app` / `app:threads`)."""

    def __init__(self, account: str, remaining: float) -> None:
        super().__init__(f"{account} is paused for {remaining:.1f}s", retry_after=remaining)
        self.account = account


class Transient(MetaError):
    """A temporary failure (codes 1/2, HTTP 5xx, timeouts, connection errors, a 200 whose
    body is not a JSON object): try again."""

    retry_after: float = DEFAULT_TRANSIENT_RETRY_SECONDS


def garbled_answer(status: int, content_type: str | None) -> Transient:
    """A success status with a body that is not a JSON object (cut short, HTML, a list):
    the answer was damaged on the way, so the call is retried, never read as data."""
    shown = content_type or "no content type"
    return Transient(f"HTTP {status} with a body that is not a JSON object ({shown})",
                     http_status=status)  # fmt: skip


class AuthError(MetaError):
    """The token is expired or invalid (102/190): the account needs re-authorisation."""

    @property
    def reason(self) -> str:
        return AUTH_SUBCODES.get(self.subcode or 0, "invalid or expired token")


class ClientError(MetaError):
    """Any other rejected request; retrying the same request will fail the same way."""


class PermissionDenied(ClientError):
    """Codes 10 / 200-299: a permission is missing; the token itself is still good."""


class NotEnoughViewers(ClientError):
    """(#10) Not enough viewers: fewer than 5 people saw the story; record below_threshold."""


class InvalidMetric(ClientError):
    """(#100) about metrics: `metrics` names the requested ones Meta rejected (may be empty)."""

    def __init__(self, message: str, *, metrics: Sequence[str] = (), **fields: Any) -> None:
        super().__init__(message, **fields)
        self.metrics = tuple(metrics)


class ObjectNotFound(ClientError):
    """(#100, subcode 33) the object does not exist or cannot be read, e.g. an expired story."""


class FeatureNotAvailable(ClientError):
    """THREADS_API__FEATURE_NOT_AVAILABLE: e.g. follower metrics of a Threads profile without
    a linked Instagram account, or geo-gating (https://developers.facebook.com/docs/threads/insights,
    https://developers.facebook.com/docs/threads/posts/geo-gating). `metrics` are those asked;
    `named` those the message names, so a caller can record it once per account and metric."""

    def __init__(self, message: str, *, metrics: Sequence[str] = (), **fields: Any) -> None:
        super().__init__(message, **fields)
        self.metrics = tuple(metrics)
        self.named = tuple(m for m in self.metrics if re.search(rf"\b{re.escape(m)}\b", message))


def _feature_not_available(error: Mapping[str, Any], message: str) -> bool:
    """Threads' string code; its envelope is undocumented, so look in error_data and message."""
    data = error.get("error_data")
    code = data.get("error_code") if isinstance(data, dict) else None
    return code == FEATURE_NOT_AVAILABLE or FEATURE_NOT_AVAILABLE in message


def invalid_metrics(message: str, requested: Iterable[str]) -> list[str]:
    """Which requested metrics a (#100) message rejects.

    "metric[0] must be one of the following values: a, b" lists the *valid* ones; other
    messages name the offending metric.
    """
    requested = list(requested)
    listed = _ONE_OF.search(message)
    if listed:
        allowed = set(re.findall(r"[a-z_]+", listed.group("values").lower()))
        return [name for name in requested if name not in allowed]
    return [name for name in requested if re.search(rf"\b{re.escape(name)}\b", message)]


def regain_minutes(headers: Mapping[str, str] | None) -> float:
    """The largest `estimated_time_to_regain_access` (minutes) in X-Business-Use-Case-Usage."""
    buc = parse_buc_usage((headers or {}).get("x-business-use-case-usage"))
    return max((u.regain_minutes for entries in buc.values() for u in entries), default=0.0)


def _retry_after_seconds(
    headers: Mapping[str, str] | None, minute_seconds: float, *, app: bool = False
) -> float:
    """The BUC regain estimate (account limits; the app's X-App-Usage has none), else a
    default of five minutes; a longer Retry-After wins."""
    minutes = (0.0 if app else regain_minutes(headers)) or DEFAULT_THROTTLE_MINUTES
    seconds = minutes * minute_seconds
    header = (headers or {}).get("retry-after", "")
    if header.strip().isdigit():
        seconds = max(seconds, float(header))
    return seconds


def _error_class(
    status: int, code: int | None, message: str, is_transient: bool
) -> type[MetaError]:
    if code == APP_THROTTLE_CODE:
        return AppThrottled
    if status == 429 or code in THROTTLE_CODES or (code is not None and code in BUC_THROTTLE_CODES):
        return Throttled
    if code in AUTH_CODES:
        return AuthError
    if code == 10 and _NOT_ENOUGH_VIEWERS in message.lower():
        return NotEnoughViewers
    if code == 10 or (code is not None and 200 <= code <= 299):
        return PermissionDenied
    if code == 100 and "metric" in message.lower():
        return InvalidMetric
    if code in TRANSIENT_CODES or is_transient or status >= 500:
        return Transient
    return ClientError


def error_from_response(
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    *,
    requested_metrics: Sequence[str] = (),
    minute_seconds: float = 60.0,
) -> MetaError:
    """Map a failed response (status, parsed JSON body or None, headers) to the error tree.

    `headers` must be case-insensitive (httpx.Headers) or use lowercase names.
    """
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    message = str(error.get("message") or f"HTTP {status} from the Graph API")
    fields: dict[str, Any] = {
        "code": code,
        "subcode": error.get("error_subcode")
        if isinstance(error.get("error_subcode"), int)
        else None,
        "is_transient": error.get("is_transient") is True,
        "fbtrace_id": str(error["fbtrace_id"]) if error.get("fbtrace_id") else None,
        "http_status": status,
        "error_type": str(error["type"]) if error.get("type") else None,
    }
    cls = _error_class(status, code, message, fields["is_transient"])
    if issubclass(cls, ClientError) and _feature_not_available(error, message):
        return FeatureNotAvailable(message, metrics=requested_metrics, **fields)
    if issubclass(cls, Throttled):
        app = cls is AppThrottled
        wait = _retry_after_seconds(headers, minute_seconds, app=app)
        return cls(message, retry_after=wait, **fields)
    if cls is InvalidMetric:
        return InvalidMetric(message, metrics=invalid_metrics(message, requested_metrics), **fields)
    if cls is ClientError and code == 100 and fields["subcode"] == 33:
        return ObjectNotFound(message, **fields)
    return cls(message, **fields)
