"""The receiver's webhook endpoints: Meta's handshake and signed deliveries (health: health.py).

The delivery path is kept short on purpose (it is benchmarked): one pass over the raw headers,
a bounded read of the body, one HMAC and one SHA-256, then the archive's group commit. No JSON
is parsed here; the worker does that later from the stored bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive

from core.errors import StoreUnavailable
from models.types import utcnow
from receiver import metrics as m
from receiver.archive import DeliveryRow
from receiver.signature import verify

log = logging.getLogger(__name__)

# Headers kept with each delivery, for audit and replay; everything else is dropped.
KEPT_HEADERS = {
    name.encode(): name
    for name in (
        "content-type",
        "user-agent",
        "x-hub-signature-256",
        "x-hub-signature",
        "x-forwarded-for",
    )
}


@dataclass(frozen=True)
class Webhook:
    """One webhook endpoint: Instagram (Meta app) or Threads (its own app and secret)."""

    platform: str
    secret: str
    verify_token: str
    max_body_bytes: int

    @property
    def path(self) -> str:
        return f"/webhooks/{self.platform}"

    async def handshake(self, request: Request) -> Response:
        """Meta's subscription check: echo `hub.challenge` only for our verify token."""
        params = request.query_params
        token = params.get("hub.verify_token")
        challenge = params.get("hub.challenge")
        if (
            params.get("hub.mode") == "subscribe"
            and token is not None
            and challenge is not None
            and hmac.compare_digest(token.encode(), self.verify_token.encode())
        ):
            return PlainTextResponse(challenge)
        return PlainTextResponse("forbidden", status_code=403)

    async def deliver(self, request: Request) -> Response:
        """Answer 200 only once the raw body is committed (or was committed before)."""
        arrived = time.perf_counter()
        counters: m.ReceiverMetrics = request.app.state.metrics
        headers, declared = _scan_headers(request.scope["headers"])
        if declared is not None and declared > self.max_body_bytes:
            counters.count(self.platform, m.TOO_LARGE)
            return _too_large()
        try:
            body = await _read_body(request.receive, self.max_body_bytes)
        except ClientDisconnect:  # nobody is left to answer; nothing was signed or stored
            return Response(status_code=400)
        if body is None:
            counters.count(self.platform, m.TOO_LARGE)
            return _too_large()
        if not verify(body, headers.get("x-hub-signature-256"), self.secret):
            counters.count(self.platform, m.BAD_SIGNATURE)
            return PlainTextResponse("invalid signature", status_code=401)
        row = DeliveryRow(self.platform, body, hashlib.sha256(body).hexdigest(), headers, utcnow())
        try:
            stored = await request.app.state.archive.store(row)
        except StoreUnavailable:
            counters.count(self.platform, m.UNAVAILABLE)
            return PlainTextResponse(
                "archive unavailable, retry later", status_code=503, headers={"Retry-After": "5"}
            )
        outcome = m.STORED if stored else m.DUPLICATE
        counters.acked(self.platform, outcome, time.perf_counter() - arrived)
        return Response(status_code=200)

    def routes(self) -> list[BaseRoute]:
        return [
            Route(self.path, self.handshake, methods=["GET"]),
            Route(self.path, self.deliver, methods=["POST"]),
        ]


def _scan_headers(raw: Iterable[tuple[bytes, bytes]]) -> tuple[dict[str, str], int | None]:
    """The headers worth keeping and the declared Content-Length, in one pass."""
    kept: dict[str, str] = {}
    declared: int | None = None
    for name, value in raw:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None  # the server rejects a bad length; the read below is bounded
        elif (key := KEPT_HEADERS.get(name)) is not None:
            kept[key] = value.decode("latin-1")
    return kept, declared


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large() -> Response:
    return PlainTextResponse("payload too large", status_code=413)
