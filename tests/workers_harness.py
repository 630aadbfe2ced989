"""Real arq workers for tests: run on the test's event loop until the block ends; a job's ctx
built the way the worker builds it, for calling one job at a chosen try; the job-failure
counters; and a bounded wait for a condition read from the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import redis
from arq.connections import RedisSettings, create_pool
from arq.worker import Worker

from core.config import Settings
from reports.figures import JOB_FAILURES_KEY
from reports.worker_metrics import WorkerMetrics
from workers.main import build_workers, make_startup, shutdown
from workers.running import close_workers, run_lanes
from workers.runtime.context import Context


@asynccontextmanager
async def running_workers(
    settings: Settings, count: int = 1, *, metrics: WorkerMetrics | None = None
) -> AsyncIterator[list[Worker]]:
    """`count` real worker processes' lanes (cron included) on this loop until the block ends;
    with `metrics`, all of them count into it."""
    fleet = [
        build_workers(settings, metrics=metrics, poll_delay=0.05, handle_signals=False)
        for _ in range(count)
    ]
    tasks = [asyncio.create_task(run_lanes(lanes)) for lanes in fleet]
    try:
        yield [worker for lanes in fleet for worker in lanes]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lanes in fleet:
            await close_workers(lanes)


@asynccontextmanager
async def job_context(settings: Settings, *, job_try: int = 1) -> AsyncIterator[Context]:
    """The ctx a job of the main lane gets from the worker (settings, engine, Meta clients,
    Redis), at try `job_try`: for driving one job through a chosen try without waiting out
    arq's back-off."""
    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url or ""))
    ctx: Context = {"redis": redis}
    await make_startup(settings)(ctx)
    ctx |= {"job_id": "test-job", "job_try": job_try}
    try:
        yield ctx
    finally:
        await shutdown(ctx)
        await redis.aclose()


async def eventually(predicate: Callable[[], Any], *, timeout: float = 20.0) -> Any:
    """Poll a (blocking, quick) predicate from the loop until truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (result := await asyncio.to_thread(predicate)):
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout}s"
            raise TimeoutError(msg)
        await asyncio.sleep(0.1)
    return result


def job_failures(redis_url: str) -> dict[str, int]:
    """JOB_FAILURES_KEY as `{"<function>|<outcome>": count}`."""
    client = redis.Redis.from_url(redis_url)
    try:
        found = cast(dict[bytes, bytes], client.hgetall(JOB_FAILURES_KEY))
    finally:
        client.close()
    return {key.decode(): int(value) for key, value in found.items()}
