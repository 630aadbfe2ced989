"""The arq worker: its functions, cron jobs, and the clients it shares through ctx."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from arq import cron
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker

from models.config import Settings
from models.db import create_db_engine
from models.errors import ConfigError
from models.outbox import sweep_stale
from workers.deliveries import process_delivery


async def sweep_deliveries(ctx: dict[str, Any]) -> int:
    """Re-enqueue deliveries pending too long (a Redis flush, a crashed relay)."""
    settings: Settings = ctx["settings"]
    redis: ArqRedis = ctx["redis"]
    return await sweep_stale(
        ctx["engine"], redis, after=timedelta(seconds=settings.sweep_after_seconds)
    )


def _startup(settings: Settings) -> Any:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        ctx["engine"] = create_db_engine(settings.database_url)

    return startup


async def _shutdown(ctx: dict[str, Any]) -> None:
    engine = ctx.get("engine")
    if engine is not None:
        engine.dispose()


def redis_settings(settings: Settings) -> RedisSettings:
    if not settings.redis_url:
        msg = "REDIS_URL must be set for the worker"
        raise ConfigError(msg)
    if settings.redis_url.startswith("unix://"):
        return RedisSettings(unix_socket_path=settings.redis_url.removeprefix("unix://"))
    return RedisSettings.from_dsn(settings.redis_url)


def build_worker(
    settings: Settings,
    *,
    burst: bool = False,
    poll_delay: float = 0.5,
    redis_pool: ArqRedis | None = None,
    handle_signals: bool = True,
) -> Worker:
    return Worker(
        functions=[process_delivery],
        cron_jobs=[cron(sweep_deliveries, second={0}, run_at_startup=True)],
        redis_settings=None if redis_pool is not None else redis_settings(settings),
        redis_pool=redis_pool,
        on_startup=_startup(settings),
        on_shutdown=_shutdown,
        burst=burst,
        poll_delay=poll_delay,
        job_timeout=settings.job_timeout_seconds,
        max_jobs=settings.worker_max_jobs,
        handle_signals=handle_signals,
    )


def run_worker(settings: Settings) -> None:
    """Block running one worker until SIGINT/SIGTERM (the `archiver worker` command)."""
    worker = build_worker(settings)
    asyncio.run(_run(worker))


async def _run(worker: Worker) -> None:
    try:
        await worker.main()
    finally:
        await worker.close()
