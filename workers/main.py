"""The arq worker: its functions, cron jobs, and the clients it shares through ctx.

To add work, append to FUNCTIONS (jobs enqueued by name, models/jobs.py) or make_cron_jobs, and
put any shared client into ctx in `startup` (closed again in `shutdown`).
"""

from __future__ import annotations

import asyncio
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
from models.jobs import (
    CAPTURE_STORY,
    CAPTURE_THREADS_POST,
    POLL_STORIES,
    POLL_THREADS,
    PROCESS_DELIVERY,
)
from models.outbox import sweep_stale
from workers.capturing import CAPTURE_MAX_TRIES
from workers.context import DB_THREADS, close_db_threads, make_db_threads
from workers.deliveries import process_delivery
from workers.graph import GraphClient, make_http_client
from workers.scheduler import schedule_due
from workers.stories import capture_story, poll_stories
from workers.threads import ThreadsClient
from workers.threads_polling import poll_threads
from workers.threads_posts import capture_threads_post
from workers.tokens import refresh_tokens

log = logging.getLogger(__name__)

Startup = Callable[[dict[str, Any]], Awaitable[None]]

# arq fills its free job slots only when it polls the queue, and a poll that finds every slot
# taken ends at once: a worker starts at most WORKER_MAX_JOBS jobs per poll_delay. arq's 0.5 s
# default caps a worker at 20 jobs/s with 10 slots (measured: 13-27 jobs/s with an idle CPU and
# a thousand due captures waiting); 50 ms lifts the cap far above what a core can do, for the
# price of ~20 cheap ZRANGEBYSCOREs a second when idle.
POLL_DELAY_SECONDS = 0.05


async def sweep_deliveries(ctx: dict[str, Any]) -> int:
    """Re-enqueue deliveries left pending too long (a Redis flush, a crash between steps)."""
    settings: Settings = ctx["settings"]
    moved = await sweep_stale(
        ctx["engine"], ctx["redis"], after=timedelta(seconds=settings.sweep_after_seconds)
    )
    if moved:
        log.warning("re-enqueued %d stale deliveries", moved, extra={"moved": moved})
    return moved


FUNCTIONS: list[Function] = [
    func(process_delivery, name=PROCESS_DELIVERY),
    func(poll_stories, name=POLL_STORIES),
    func(capture_story, name=CAPTURE_STORY, max_tries=CAPTURE_MAX_TRIES),
    func(poll_threads, name=POLL_THREADS),
    func(capture_threads_post, name=CAPTURE_THREADS_POST, max_tries=CAPTURE_MAX_TRIES),
]


def make_cron_jobs(settings: Settings) -> list[CronJob]:
    """Fresh CronJobs (arq keeps each one's next run on the object: every worker needs its own).

    unique (arq's default) makes one worker of many run each tick; run_at_startup makes a
    worker that comes back after an outage sweep and schedule at once.
    """
    tick = settings.schedule_tick_seconds
    return [
        # Every 10 s: after a Redis flush, lost deliveries are back in the queue soon.
        cron(
            sweep_deliveries,
            name="sweep_deliveries",
            second=set(range(0, 60, 10)),
            run_at_startup=True,
        ),
        cron(
            schedule_due,
            name="schedule_due",
            second=set(range(0, 60, tick)),
            run_at_startup=True,
        ),
        # Hourly, whatever else runs: a token refreshed late is a token lost.
        cron(refresh_tokens, name="refresh_tokens", minute={17}, second={30}, run_at_startup=True),
    ]


def make_startup(settings: Settings) -> Startup:
    """on_startup: the settings and one database engine per worker process, in ctx."""

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        ctx["engine"] = create_db_engine(settings.database_url, token_key=settings.token_key)
        ctx[DB_THREADS] = make_db_threads(settings.worker_max_jobs)
        ctx["http"] = make_http_client(settings)
        ctx["graph"] = GraphClient.from_settings(ctx["http"], settings, ctx["redis"])
        ctx["threads"] = ThreadsClient.from_settings(ctx["http"], settings, ctx["redis"])

    return startup


async def shutdown(ctx: dict[str, Any]) -> None:
    """on_shutdown: close the HTTP client, give the database connections back."""
    http = ctx.pop("http", None)
    if http is not None:
        await http.aclose()
    await close_db_threads(ctx)
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
        "cron_jobs": make_cron_jobs(settings) if cron_jobs else [],
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
    poll_delay: float = POLL_DELAY_SECONDS,
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
        await close_worker(worker, cancel_jobs=not signalled)
        if handle_signals:  # arq leaves its handlers on the loop, which may live on
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def close_worker(worker: Worker, *, cancel_jobs: bool = True) -> None:
    """Let cancelled jobs settle before arq's close(), which would re-raise their
    cancellation; arq re-queues a cancelled job, so another worker runs it again."""
    if cancel_jobs:
        for task in worker.tasks.values():
            task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    worker.tasks.clear()
    await worker.close()
