"""Meta's error bodies, as the simulator sends them.

Graph envelope (https://developers.facebook.com/docs/graph-api/guides/error-handling):
`{"error":{"message","type":"OAuthException","code","error_subcode","is_transient","fbtrace_id"}}`.
`is_transient` is not in Meta's documented example but real bodies carry it (public test
fixtures of Meta clients), so every body here has it.

Threads envelope [UNCERTAIN] (https://developers.facebook.com/docs/threads does not document
its exact error envelope):
the Graph envelope with `"type": "THApiException"`, and for THREADS_API__FEATURE_NOT_AVAILABLE
the string code both in `error_data.error_code` and at the start of the message, code 100,
no subcode. Token errors on the Threads host use the Graph OAuthException bodies.
"""

from __future__ import annotations

import secrets
import string
from datetime import datetime
from typing import Any, Final

from metasim.world.tokens import expired_message

OAUTH: Final = "OAuthException"
THREADS: Final = "THApiException"
FEATURE_NOT_AVAILABLE: Final = "THREADS_API__FEATURE_NOT_AVAILABLE"
_TRACE_ALPHABET: Final = string.ascii_letters + string.digits + "_-"


def fbtrace_id() -> str:
    return "".join(secrets.choice(_TRACE_ALPHABET) for _ in range(11))


class MetaApiError(Exception):
    """An answer that is an error: HTTP status plus Meta's JSON body (or raw text)."""

    def __init__(
        self, status: int, body: dict[str, Any] | str, *, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        super().__init__(f"HTTP {status}: {self.message}")

    @property
    def code(self) -> int | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error.get("code") if isinstance(error, dict) else None

    @property
    def message(self) -> str:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return str(error.get("message")) if isinstance(error, dict) else str(self.body)[:80]


def error_body(
    code: int,
    message: str,
    *,
    kind: str = OAUTH,
    subcode: int | None = None,
    is_transient: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["is_transient"] = is_transient
    error.update(extra)
    error["fbtrace_id"] = fbtrace_id()
    return {"error": error}


def api_error(status: int, code: int, message: str, **fields: Any) -> MetaApiError:
    return MetaApiError(status, error_body(code, message, **fields))


# --- tokens ----------------------------------------------------------------------------


def missing_token() -> MetaApiError:
    return api_error(400, 104, "An access token is required to request this resource.")


def invalid_token() -> MetaApiError:
    message = "Error validating access token: Invalid OAuth access token."
    return api_error(400, 190, message, subcode=467)


def unparsable_token() -> MetaApiError:
    """A token of the other login type: Facebook Login tokens on graph.instagram.com and
    Instagram Login tokens on graph.facebook.com, as Meta answers both (public reports)."""
    return api_error(400, 190, "Invalid OAuth access token - Cannot parse access token")


def expired_token(expired_at: datetime, now: datetime) -> MetaApiError:
    return api_error(400, 190, expired_message(expired_at, now), subcode=463)


def token_too_young() -> MetaApiError:
    """Refreshing needs a token at least 24 h old (Meta's rule); Meta's wording is unknown."""
    message = (
        "Error validating access token: the access token cannot be refreshed "
        "because it is less than 24 hours old."
    )
    return api_error(400, 190, message)


def bad_grant(grant_type: str | None) -> MetaApiError:
    return api_error(400, 100, f"Unsupported grant_type: {grant_type or '(missing)'}")


# --- objects and parameters -------------------------------------------------------------


def object_not_found(object_id: str) -> MetaApiError:
    message = (
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation. Please read "
        "the Graph API documentation at https://developers.facebook.com/docs/graph-api"
    )
    return api_error(400, 100, message, kind="GraphMethodException", subcode=33)


def unknown_path(segments: list[str]) -> MetaApiError:
    return api_error(400, 2500, f"Unknown path components: /{'/'.join(segments)}")


def unversioned_call() -> MetaApiError:
    """[UNCERTAIN] Meta serves unversioned calls at the app's dashboard version; the
    simulator refuses them (see metasim.api.versions)."""
    message = (
        "An API version is required at the start of the path, e.g. /v25.0/me "
        "(unversioned calls are refused by this simulator)"
    )
    return api_error(400, 2500, message)


def permission_denied(code: int, message: str) -> MetaApiError:
    """(#10) or (#200-299): see metasim.world.denials for the wording and statuses."""
    return api_error(400 if code == 10 else 403, code, message)


def nonexisting_field(name: str, node_type: str) -> MetaApiError:
    message = f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})"
    return api_error(400, 100, message)


def bad_param(message: str, *, kind: str = OAUTH) -> MetaApiError:
    return api_error(400, 100, f"(#100) {message}", kind=kind)


# --- insights ----------------------------------------------------------------------------


def deprecated_metric(metric: str) -> MetaApiError:
    # Names only the rejected metric: clients drop every metric a (#100) message names.
    message = (
        f"(#100) The {metric} metric is no longer supported for this media. "
        "See the Graph API changelog."
    )
    return api_error(400, 100, message)


def unsupported_metric(metric: str) -> MetaApiError:
    message = (
        f"(#100) The Media Insights API does not support the {metric} metric "
        "for this media product type."
    )
    return api_error(400, 100, message)


def invalid_metric(index: int, allowed: tuple[str, ...]) -> MetaApiError:
    message = f"(#100) metric[{index}] must be one of the following values: {', '.join(allowed)}"
    return api_error(400, 100, message)


def unknown_error() -> MetaApiError:
    """What Meta answers to a breakdown mixed with a metric that does not support it (MINS)."""
    return api_error(500, 1, "An unknown error has occurred.")


def not_enough_viewers() -> MetaApiError:
    return api_error(400, 10, "(#10) Not enough viewers for the media to show insights")


def feature_not_available(metric: str) -> MetaApiError:
    """[UNCERTAIN] envelope, see the module docstring."""
    message = (
        f"{FEATURE_NOT_AVAILABLE}: {metric} is not available for Threads profiles "
        "without a linked Instagram account."
    )
    return api_error(
        400, 100, message, kind=THREADS, error_data={"error_code": FEATURE_NOT_AVAILABLE}
    )


# --- throttling and injected faults -----------------------------------------------------

# code -> (HTTP status, message, is_transient); statuses as commonly reported for each code.
CODE_DEFAULTS: Final[dict[int, tuple[int, str, bool]]] = {
    1: (500, "An unknown error has occurred.", True),
    2: (503, "An unexpected error has occurred. Please retry your request later.", True),
    4: (403, "(#4) Application request limit reached", True),
    17: (400, "(#17) User request limit reached", True),
    32: (400, "(#32) Page request limit reached", True),
    613: (400, "(#613) Calls to this api have exceeded the rate limit.", True),
    80002: (
        400,
        "(#80002) There have been too many calls to this Instagram account. Wait a bit and "
        "try again. For more info, please refer to "
        "https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
        True,
    ),
}
# HTTP status without a code -> the body Meta's edge would send (None: plain text).
STATUS_DEFAULTS: Final[dict[int, tuple[int, str, bool] | None]] = {
    429: (4, "(#4) Application request limit reached", True),
    500: (1, "An unknown error has occurred.", True),
    502: None,
    503: (2, "Service temporarily unavailable", True),
    504: None,
}
THROTTLE_CODES: Final = frozenset({4, 17, 32, 613, 80001, 80002})


def throttled(code: int = 80002) -> MetaApiError:
    status, message, transient = CODE_DEFAULTS[code]
    return api_error(status, code, message, is_transient=transient)


# A fault that quotes a token back (metasim.world.faults.QUOTES): the code, subcode and message
# (with `{quote}`) it answers when the fault names no code or status of its own. The wording
# is the simulator's [UNCERTAIN]: Meta's 190 messages name a session, and a client must
# expect any error text, or a proxy's, to echo a token or the request URL.
_SESSION_QUOTED: Final = (
    190,
    463,
    "Error validating access token: The session for token {quote} has expired or is invalid.",
)
QUOTE_DEFAULTS: Final[dict[str, tuple[int, int | None, str]]] = {
    "token": _SESSION_QUOTED,
    "old_token": _SESSION_QUOTED,
    "url": (100, None, "(#100) Unsupported get request: {quote}"),
}


def fault_error(
    *,
    code: int | None,
    status: int | None,
    message: str | None = None,
    subcode: int | None = None,
    is_transient: bool | None = None,
) -> MetaApiError:
    """The answer of an injected fault: a Meta error code, an HTTP status, or both."""
    if code is None:
        status = status or 500
        preset = STATUS_DEFAULTS.get(status, (1, "An unknown error has occurred.", True))
        if preset is None and message is None:
            return MetaApiError(status, f"<html><body><h1>{status}</h1></body></html>")
        code, default_message, transient = preset or (1, "An unknown error has occurred.", True)
    else:
        default_status, default_message, transient = CODE_DEFAULTS.get(
            code, (400, f"(#{code}) Simulated error", False)
        )
        status = status or default_status
    return api_error(
        status,
        code,
        message or default_message,
        subcode=subcode,
        is_transient=transient if is_transient is None else is_transient,
    )
