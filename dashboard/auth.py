"""Who may read the dashboard: anyone on loopback, otherwise only holders of DASHBOARD_TOKEN.

The token travels in the Authorization header (HTTP basic auth with any user name and the
token as password, or `Bearer <token>`), never in the URL, where access logs, proxies and
browser history would keep it. Comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from core.config import Settings
from core.errors import ConfigError

REALM = 'Basic realm="archiver dashboard", charset="UTF-8"'


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 and ::1; anything else (0.0.0.0, a LAN address) is exposed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def require_token_if_exposed(settings: Settings) -> None:
    """Refuse to serve beyond loopback without DASHBOARD_TOKEN (ConfigError, exit 2)."""
    token = settings.dashboard_token
    if is_loopback(settings.dashboard_host) or (token and token.get_secret_value()):
        return
    msg = (
        f"the dashboard would listen on {settings.dashboard_host}, beyond loopback, without "
        "DASHBOARD_TOKEN: set it, or listen on 127.0.0.1"
    )
    raise ConfigError(msg)


def presented_secret(authorization: str) -> str | None:
    """The password of a Basic header or the token of a Bearer one; None if neither."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None


class TokenAuth:
    """ASGI middleware: 401 with a Basic challenge unless the request carries the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", REALM.encode()),
                    (b"content-type", b"text/plain; charset=utf-8"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"the dashboard needs its token\n"})

    def _allowed(self, scope: Scope) -> bool:
        headers = dict(scope["headers"])
        header = headers.get(b"authorization", b"").decode("latin-1")
        secret = presented_secret(header)
        return secret is not None and hmac.compare_digest(secret.encode(), self.token)
