"""Liveness, readiness and metrics: short answers on the public port, details on the ops port.

Readiness says whether the receiver can accept deliveries: the database must answer (without it
every delivery gets 503); Redis down only delays the hand-off to the workers (the relay catches
up), so the receiver is then "degraded", still ready. The public port says the status word only;
the ops listener (METRICS_HOST:METRICS_PORT) adds which store failed, and serves /metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from models.db import ping
from receiver import metrics as m

log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0  # seconds for each readiness check and the metrics backlog query
OK, DEGRADED, UNAVAILABLE = "ok", "degraded", "unavailable"
NOT_CONFIGURED = "not configured"


async def healthz(_request: Request) -> Response:
    """Liveness: the process answers."""
    return PlainTextResponse("ok")


async def _check(name: str, probe: Coroutine[Any, Any, Any]) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, READY_TIMEOUT)
    except Exception as exc:  # any failure means unavailable; the name goes to the body
        log.debug("readiness check %s failed: %s", name, type(exc).__name__)
        return name, UNAVAILABLE
    return name, OK


async def check_stores(state: Any) -> dict[str, str]:
    """Each store's answer now: ok, unavailable (or Redis "not configured"). Before the
    lifespan has opened the engine, the database counts as unavailable."""
    engine = getattr(state, "engine", None)
    if engine is None:
        return {"database": UNAVAILABLE, "redis": UNAVAILABLE}
    probes = [_check("database", asyncio.to_thread(ping, engine))]
    if state.redis is not None:
        probes.append(_check("redis", state.redis.ping()))
    checks = dict(await asyncio.gather(*probes))
    checks.setdefault("redis", NOT_CONFIGURED)
    return checks


def readiness(checks: dict[str, str]) -> tuple[str, int]:
    """The status word and HTTP status: the database decides readiness, Redis only degrades."""
    if checks["database"] != OK:
        return UNAVAILABLE, 503
    if checks["redis"] == UNAVAILABLE:
        return DEGRADED, 200
    return OK, 200


async def readyz(request: Request) -> Response:
    """Public readiness for load balancers: the status word only (ok, degraded, unavailable)."""
    status, code = readiness(await check_stores(request.app.state))
    return PlainTextResponse(status, status_code=code)


async def readyz_detail(request: Request) -> Response:
    """Ops readiness: the status, each store's check and the ones that failed."""
    checks = await check_stores(request.app.state)
    status, code = readiness(checks)
    failed = sorted(name for name, result in checks.items() if result == UNAVAILABLE)
    return JSONResponse({"status": status, "checks": checks, "failed": failed}, code)


async def metrics(request: Request) -> Response:
    """Prometheus exposition of the process's registry; stores and backlog are read now (and
    in `archiver run`, the archive-wide gauges, off the event loop)."""
    state = request.app.state
    checks, backlog = await asyncio.gather(check_stores(state), _backlog(state))
    scrape = state.metrics.scrape
    scrape.stores = {
        name: result == OK for name, result in checks.items() if result != NOT_CONFIGURED
    }
    scrape.backlog = backlog
    body = await asyncio.to_thread(generate_latest, state.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _backlog(state: Any) -> m.Backlog | None:
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(m.query_backlog, state.engine), READY_TIMEOUT
        )
    except Exception as exc:  # counters are still worth serving without the database
        log.warning("metrics: backlog query failed: %s", type(exc).__name__)
        return None


def health_routes() -> list[BaseRoute]:
    """The public port's: liveness and the short readiness; no metrics, no details."""
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


def ops_routes() -> list[BaseRoute]:
    """The ops listener's: liveness, detailed readiness and the Prometheus metrics."""
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz_detail, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
