"""One GET against a Meta host, done the way every Meta client of the worker must do it.

Shared by the Instagram Graph client (workers.meta.graph_api) and the Threads client
(workers.meta.threads_api) so that both honour the same rules
(https://developers.facebook.com/docs/graph-api/overview/rate-limiting): check the shared
pause before calling (once limited, stop calling; more calls extend the block), read the
usage headers of every answer (errors and throttles included), pause the account or the
whole app on throttling, retry only Transient failures (a 200 whose body is not a JSON object
among them) and only a few times, and keep the token out of every log line, error message
and exception chain.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from redis.asyncio import Redis

from core.config import Settings
from core.redaction import RedactingFilter, scrub
from models.types import utcnow
from reports.worker_metrics import WorkerMetrics
from workers.meta.api_errors import MetaError, Transient, error_from_response, garbled_answer
from workers.meta.pacing import Pacer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenGrant:
    """A refreshed long-lived token and when it runs out."""

    access_token: str = field(repr=False)
    expires_in: int
    expires_at: datetime


def parse_grant(body: Mapping[str, Any]) -> TokenGrant:
    """refresh_access_token's answer (IG Login and Threads alike); no token, no grant."""
    token, expires_in = body.get("access_token"), body.get("expires_in")
    if not isinstance(token, str) or not isinstance(expires_in, int):
        msg = "refresh_access_token answered without access_token/expires_in"
        raise MetaError(msg)
    return TokenGrant(token, expires_in, utcnow() + timedelta(seconds=expires_in))


def make_http_client(settings: Settings) -> httpx.AsyncClient:
    """The one AsyncClient of a worker process: bounded timeouts, tokens kept out of logs."""
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, RedactingFilter) for f in httpx_log.filters):
        httpx_log.addFilter(RedactingFilter())  # for processes without archiver.logs' handler
    # A job makes a few calls with up to 3 tries each; keep them all inside the job timeout.
    read = min(30.0, settings.job_timeout_seconds / 10)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(read, connect=5.0),
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        headers={"User-Agent": "meta-insights-archiver"},
    )


def on_host(base: str, url: str) -> bool:
    """Whether `url` lies under `base`: a paging link elsewhere must not get our token."""
    return url.startswith(base.rstrip("/") + "/")


def next_page(
    base: str, url: str, params: Mapping[str, str], body: Any
) -> tuple[str, dict[str, str]] | None:
    """Where the page after `body` is, or None on the last page (no `paging.next`).

    `next` is followed as given when it stays on our host; a link elsewhere must not get the
    token, so then our own URL is asked again with its `after` cursor, or the walk stops.
    """
    paging = body.get("paging") if isinstance(body, dict) else None
    paging = paging if isinstance(paging, dict) else {}
    nxt = paging.get("next")
    if not isinstance(nxt, str) or not nxt:
        return None
    if on_host(base, nxt):
        return nxt, {}
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, dict) else None
    if isinstance(after, str) and after:
        log.warning("paging.next points to another host; using the after cursor instead")
        return url, {**params, "after": after}
    log.warning("not following a paging.next link to another host")
    return None


def shared_pacer(
    settings: Settings,
    redis: Redis | None,
    minute_seconds: float | None = None,
    metrics: WorkerMetrics | None = None,
) -> Pacer | None:
    """The pauses every worker shares through Redis (none without Redis); a throttle
    "minute" lasts META_MINUTE_SECONDS unless a test says otherwise. `metrics`: the
    process's, where the pacer counts calls and pauses."""
    if redis is None:
        return None
    minute = settings.meta_minute_seconds if minute_seconds is None else minute_seconds
    return Pacer(redis, minute_seconds=minute, metrics=metrics)


class MetaTransport:
    """GETs for any Meta API; holds no token, the caller passes one per call.

    `key` names the pacer's account (`ig:<ig_user_id>`, `threads:<threads_user_id>`).
    Every request checks the shared pause of the account and of its app first
    (AccountPaused, no request sent), feeds every answer's usage headers and throttle error
    to the pacer, retries Transient failures a bounded number of times with jittered
    exponential back-off, and raises everything else from workers.meta.api_errors.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        pacer: Pacer | None = None,
        max_tries: int = 3,
        backoff_seconds: float = 0.5,
        backoff_cap_seconds: float = 4.0,
    ) -> None:
        self.http = http
        self.pacer = pacer
        self.max_tries = max(1, max_tries)
        self.backoff_seconds = backoff_seconds
        self.backoff_cap_seconds = backoff_cap_seconds

    @classmethod
    def from_settings(
        cls,
        http: httpx.AsyncClient,
        settings: Settings,
        redis: Redis | None,
        *,
        minute_seconds: float | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> MetaTransport:
        """The worker's transport, for either client: pauses shared in Redis (none without)."""
        return cls(http, pacer=shared_pacer(settings, redis, minute_seconds, metrics))

    def __repr__(self) -> str:
        return f"MetaTransport(max_tries={self.max_tries}, pacer={self.pacer!r})"

    async def get(
        self,
        key: str,
        token: str,
        url: str,
        params: Mapping[str, str] | None = None,
        *,
        metrics: Sequence[str] = (),
    ) -> dict[str, Any]:
        """GET with the shared pause honoured and Transient failures retried (bounded).

        `metrics` are the requested ones, so that a metric error can name those to drop.
        """
        for attempt in range(1, self.max_tries + 1):
            if self.pacer is not None:
                await self.pacer.check(key)
            result = await self._try(key, token, url, {**(params or {})}, metrics)
            if not isinstance(result, MetaError):
                return result
            if not isinstance(result, Transient) or attempt == self.max_tries:
                raise result
            delay = min(self.backoff_cap_seconds, self.backoff_seconds * 2 ** (attempt - 1))
            log.info("transient error (try %d/%d): %s", attempt, self.max_tries, result)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _try(
        self, key: str, token: str, url: str, params: dict[str, str], metrics: Sequence[str]
    ) -> dict[str, Any] | MetaError:
        """One request: the JSON body, or the error for the caller to raise.

        The error is built fresh and raised outside any `except`, so no httpx exception
        (whose request URL holds the token) is chained to it.
        """
        params["access_token"] = token
        # Merge, not replace: httpx drops a URL's own query when `params` is given, and a
        # `paging.next` link carries its cursor there.
        target = httpx.URL(url).copy_merge_params(params)
        sent = time.perf_counter()
        try:
            response = await self.http.get(target)
        except httpx.RequestError as exc:
            await self._count(key, target.path, "error", sent)
            return Transient(f"{type(exc).__name__}: {scrub(str(exc), (token,))}")
        await self._count(key, target.path, str(response.status_code), sent)
        log.debug("GET %s -> %d", response.request.url.path, response.status_code)
        minute = self.pacer.minute_seconds if self.pacer else 60.0
        result = read_answer(response, metrics=metrics, minute_seconds=minute)
        if isinstance(result, MetaError):
            result.redact(token)
        if self.pacer is not None:
            error = result if isinstance(result, MetaError) else None
            await self.pacer.after(key, response.headers, error)
        return result

    async def _count(self, key: str, path: str, status: str, sent: float) -> None:
        if self.pacer is not None:
            seconds = time.perf_counter() - sent
            await self.pacer.count_call(key, status, path=path, seconds=seconds)


def read_answer(
    response: httpx.Response, *, metrics: Sequence[str] = (), minute_seconds: float = 60.0
) -> dict[str, Any] | MetaError:
    """A response's JSON object, or the error it means: Meta's error for a failure status,
    Transient for a success whose body is not a JSON object (damaged: retry, never read)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        if isinstance(body, dict):
            return body
        return garbled_answer(response.status_code, response.headers.get("content-type"))
    return error_from_response(
        response.status_code,
        body,
        response.headers,
        requested_metrics=metrics,
        minute_seconds=minute_seconds,
    )
