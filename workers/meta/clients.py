"""Both Meta clients on one transport: the one way the workers and the CLI build them, so
every Meta call shares one pacer (pauses in Redis), one retry policy and one HTTP client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from workers.meta.graph_api import GraphClient
from workers.meta.threads_api import ThreadsClient
from workers.meta.transport import MetaTransport

if TYPE_CHECKING:
    import httpx
    from redis.asyncio import Redis

    from core.config import Settings
    from reports.worker_metrics import WorkerMetrics


@dataclass(frozen=True)
class MetaClients:
    graph: GraphClient
    threads: ThreadsClient


def build_clients(
    http: httpx.AsyncClient,
    settings: Settings,
    redis: Redis | None,
    *,
    minute_seconds: float | None = None,
    metrics: WorkerMetrics | None = None,
) -> MetaClients:
    """The Graph and Threads clients from Settings; without Redis, no shared pauses.
    `metrics`: the worker process's, counting every call and pause."""
    transport = MetaTransport.from_settings(
        http, settings, redis, minute_seconds=minute_seconds, metrics=metrics
    )
    return MetaClients(
        GraphClient.from_settings(transport, settings, redis),
        ThreadsClient.from_settings(transport, settings),
    )
