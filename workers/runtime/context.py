"""`Context`, the typed `ctx` every job gets, and the worker's own thread pool for blocking
database work.

Jobs run their SQLAlchemy calls here rather than in the event loop's default executor, so
shutdown can wait for the calls of cancelled jobs to finish before the engine is disposed (a
connection handed back after that would be left open), and database concurrency per worker
stays within the engine's pool.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, ParamSpec, TypedDict, TypeVar

if TYPE_CHECKING:
    import httpx
    from arq.connections import ArqRedis
    from sqlalchemy.engine import Engine

    from core.config import Settings
    from reports.worker_metrics import WorkerMetrics
    from workers.meta.graph_api import GraphClient
    from workers.meta.threads_api import ThreadsClient

P = ParamSpec("P")
T = TypeVar("T")


class Context(TypedDict, total=False):
    """arq's ctx: what arq puts in (redis, and per job job_id, job_try, enqueue_time, score)
    and what workers.main's startup adds (settings, engine, db_threads; the Meta clients in
    the lanes that call Meta); arq copies it per job, so a job may note its ids in it.
    Jobs called directly in tests get only the keys they read."""

    redis: ArqRedis
    job_id: str
    job_try: int
    enqueue_time: datetime
    score: int
    settings: Settings
    engine: Engine
    db_threads: ThreadPoolExecutor
    http: httpx.AsyncClient
    graph: GraphClient
    threads: ThreadsClient
    metrics: WorkerMetrics  # the process's Prometheus metrics (reports.worker_metrics)
    # What a job is about, once it knows: put on its log lines (workers.runtime.failures).
    account_id: int
    media_id: str
    outcome: str  # set once the run's outcome is counted (workers.runtime.failures.count)


def make_db_threads(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="worker-db")


async def in_thread(ctx: Context, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in the worker's database threads (the loop's default pool when
    the ctx has none, e.g. a job called directly)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(fn, *args, **kwargs)
    return await loop.run_in_executor(ctx.get("db_threads"), call)


async def close_db_threads(ctx: Context) -> None:
    """Wait for the calls already running (those of cancelled jobs too), then stop."""
    pool: ThreadPoolExecutor | None = ctx.pop("db_threads", None)
    if pool is not None:
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
