"""uvicorn's httptools protocol with the two limits it lacks: header size and request time.

llhttp accepts headers of any size, and httptools joins a long header from every chunk it
arrives in, so one 128 MiB header once cost 17.8 s of CPU while genuine deliveries waited; and a
request that never finishes held its socket forever. This subclass counts the bytes received
until the headers end (431 past `max_header_bytes`) and gives each request `request_timeout`
seconds to arrive in full, from the connection's first moment or the request's first byte (408,
or a plain close when nothing was sent). A request that arrives in one read, Meta's usual, arms
no timer and costs one addition; idle keep-alive connections are closed by uvicorn's own timer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


@dataclass(frozen=True)
class Limits:
    """Per connection: the most bytes before the headers end, and the seconds a request gets."""

    max_header_bytes: int = 32 * 1024
    request_timeout: float = 10.0


def limited_protocol(limits: Limits) -> type[LimitedHttpToolsProtocol]:
    """A protocol class for uvicorn's `http=`, bound to `limits` (uvicorn passes only config)."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that answers 431 to oversize headers and 408 to slow requests."""

    limits: ClassVar[Limits] = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_header_bytes = self.limits.max_header_bytes
        self._request_timeout = self.limits.request_timeout
        self._in_headers = True  # until the current request's headers end
        self._header_bytes = 0  # bytes received since the current request began
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a full request is closed like a slow request.
        self._deadline = self.loop.call_later(self._request_timeout, self._timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)  # parser callbacks below update the two fields
        if self._in_headers:
            if self._header_bytes > self._max_header_bytes:
                self._refuse(431, b"request header fields too large")
                return
            if not self._header_bytes:  # the request ended in this read; nothing is pending
                return
        if self._deadline is None:
            self._deadline = self.loop.call_later(self._request_timeout, self._timed_out)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_headers = True
        self._header_bytes = 0
        self._cancel_deadline()
        super().on_message_complete()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        """408 for a request partly received and not answered yet; otherwise just close."""
        self._deadline = None
        cycle = self.cycle
        answered = not self._in_headers and cycle is not None and cycle.response_started
        if (self._header_bytes or not self._in_headers) and not answered:
            self._refuse(408, b"request timeout")
        else:
            self.transport.close()

    def _refuse(self, status: int, reason: bytes) -> None:
        """Answer `status` and close; the app, if it runs, sees a disconnect."""
        self._cancel_deadline()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # its later sends are dropped, its receive says so
            cycle.message_event.set()
        head = b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        length = b"content-length: %d\r\n\r\n" % len(reason)
        self.transport.write(STATUS_LINE[status] + head + length + reason)
        self.transport.close()
