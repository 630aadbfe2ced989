"""The arq worker: its functions, cron jobs, and the clients it shares through ctx.

To add work, append to FUNCTIONS (jobs enqueued by name, models/jobs.py) or CRON_JOBS, and
put any shared client into ctx in `startup` (closed again in `shutdown`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from arq import cron
from arq.connections import ArqRedis, RedisSettings
from arq.cron import CronJob
from arq.worker import Function, Worker, func

from models.config import Settings
from models.db import create_db_engine
from models.errors import ConfigError
from models.jobs import PROCESS_DELIVERY
from models.outbox import sweep_stale
from workers.deliveries import process_delivery

log = logging.getLogger(__name__)

Startup = Callable[[dict[str, Any]], Awaitable[None]]


async def sweep_deliveries(ctx: dict[str, Any]) -> int:
    """Re-enqueue deliveries left pending too long (a Redis flush, a crash between steps)."""
    settings: Settings = ctx["settings"]
    moved = await sweep_stale(
        ctx["engine"], ctx["redis"], after=timedelta(seconds=settings.sweep_after_seconds)
    )
    if moved:
        log.warning("re-enqueued %d stale deliveries", moved, extra={"moved": moved})
    return moved


FUNCTIONS: list[Function] = [func(process_delivery, name=PROCESS_DELIVERY)]
CRON_JOBS: list[CronJob] = [
    # Every minute, and once at start: a worker that comes back after an outage sweeps at once.
    # unique (arq's default) makes one worker of many run each minute's sweep.
    cron(sweep_deliveries, name="sweep_deliveries", second={0}, run_at_startup=True),
]


def make_startup(settings: Settings) -> Startup:
    """on_startup: the settings and one database engine per worker process, in ctx."""

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        ctx["engine"] = create_db_engine(settings.database_url)

    return startup


async def shutdown(ctx: dict[str, Any]) -> None:
    """on_shutdown: give the database connections back."""
    engine = ctx.pop("engine", None)
    if engine is not None:
        engine.dispose()


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings from REDIS_URL (redis://, rediss:// or unix://)."""
    if not settings.redis_url:
        msg = "REDIS_URL must be set for the worker"
        raise ConfigError(msg)
    try:
        return RedisSettings.from_dsn(settings.redis_url)
    except (RuntimeError, ValueError) as exc:
        msg = f"REDIS_URL is not a redis://, rediss:// or unix:// URL: {exc}"
        raise ConfigError(msg) from None


def worker_settings(settings: Settings, *, cron_jobs: bool = True) -> dict[str, Any]:
    """The WorkerSettings of arq as a dict (arq accepts either), built from our Settings."""
    return {
        "functions": list(FUNCTIONS),
        # arq keeps each job's next run on the CronJob itself: every worker needs its own.
        "cron_jobs": [dataclasses.replace(job, next_run=None) for job in CRON_JOBS]
        if cron_jobs
        else [],
        "redis_settings": redis_settings(settings),
        "on_startup": make_startup(settings),
        "on_shutdown": shutdown,
        "job_timeout": settings.job_timeout_seconds,
        "max_jobs": settings.worker_max_jobs,
    }


def build_worker(
    settings: Settings,
    *,
    burst: bool = False,
    poll_delay: float = 0.5,
    redis_pool: ArqRedis | None = None,
    handle_signals: bool = True,
    cron_jobs: bool = True,
) -> Worker:
    """An arq Worker for our jobs; `redis_pool` (closed by the worker) overrides REDIS_URL.

    `handle_signals=False` when the event loop is shared (`archiver run`); `cron_jobs=False`
    leaves the sweeper out, for a burst whose job count must be exact.
    """
    kwargs = worker_settings(settings, cron_jobs=cron_jobs)
    if redis_pool is not None:
        kwargs["redis_settings"] = None
    return Worker(
        **kwargs,
        redis_pool=redis_pool,
        burst=burst,
        poll_delay=poll_delay,
        handle_signals=handle_signals,
    )


async def run_worker(settings: Settings, *, handle_signals: bool = True) -> None:
    """Run one worker until SIGINT/SIGTERM (then return) or until cancelled (then raise).

    With `handle_signals=False` the caller owns the signals and stops the worker by
    cancelling this coroutine; running jobs are cancelled and re-run by the next worker.
    """
    worker = build_worker(settings, handle_signals=handle_signals)
    signalled: list[Any] = []
    worker.on_stop = signalled.append  # called by arq's own signal handler
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        if not signalled:
            raise
        log.info("worker stopped on %s", signalled[0].name)
    finally:
        await _close(worker, cancel_jobs=not signalled)
        if handle_signals:  # arq leaves its handlers on the loop, which may live on
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def _close(worker: Worker, *, cancel_jobs: bool) -> None:
    """Let cancelled jobs settle before arq's close(), which would re-raise their
    cancellation; arq re-queues a cancelled job, so another worker runs it again."""
    if cancel_jobs:
        for task in worker.tasks.values():
            task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    worker.tasks.clear()
    await worker.close()
