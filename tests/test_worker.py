"""The arq worker itself: settings, ctx, the sweeper, outages, stopping, and a killed worker."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import health_check_key_suffix
from sqlalchemy.engine import Engine

from core.config import Settings
from core.errors import ConfigError
from jobqueue.names import (
    CAPTURE_ACCOUNT_INSIGHTS,
    CAPTURE_IG_MEDIA,
    CAPTURE_STORY,
    CAPTURE_THREADS_POST,
    CONTROL_QUEUE,
    DELIVERIES_QUEUE,
    LIST_IG_MEDIA,
    MAIN_QUEUE,
    POLL_STORIES,
    POLL_THREADS,
    PROCESS_DELIVERY,
    delivery_job_id,
)
from jobqueue.outbox import enqueue_deliveries
from models.types import utcnow
from tests.conftest import make_settings
from tests.servers import free_port
from tests.test_deliveries import (
    add_account,
    add_delivery,
    delivery_row,
    run_burst,
    story_body,
)
from workers.main import CONTROL, DELIVERIES, build_worker, redis_settings, sweep_deliveries
from workers.running import run_worker
from workers.runtime.context import Context
from workers.runtime.failures import retry_delay
from workers.runtime.reclaim import WORKERS_KEY

HEALTH_KEY = MAIN_QUEUE + health_check_key_suffix
DELIVERIES_HEALTH_KEY = DELIVERIES_QUEUE + health_check_key_suffix


def utc_ago(**delta: float) -> datetime:
    return utcnow() - timedelta(**delta)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def enqueue(redis_url: str, ids: list[int]) -> None:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        await enqueue_deliveries(pool, ids)
    finally:
        await pool.aclose()


async def wait_for(predicate: Callable[[], Awaitable[Any]], *, timeout: float = 10.0) -> None:
    """The async twin of tests.servers.wait_until, for conditions checked on the loop."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout}s"
            raise TimeoutError(msg)
        await asyncio.sleep(0.02)


@pytest.mark.anyio
async def test_each_lane_is_built_from_settings(sqlite_url: str, redis_url: str) -> None:
    """Timeouts, slots and Redis come from Settings; each lane has its queue, jobs, crons."""
    settings = make_settings(sqlite_url, redis_url, job_timeout_seconds=700, worker_max_jobs=8)
    main = build_worker(settings, burst=True, handle_signals=False)
    deliveries = build_worker(settings, lane=DELIVERIES, burst=True, handle_signals=False)
    control = build_worker(settings, lane=CONTROL, burst=True, handle_signals=False)
    lanes = (main, deliveries, control)
    assert [w.max_jobs for w in lanes] == [8, 2, 3]  # deliveries: a quarter; control: three
    for worker in lanes:
        assert (worker.job_timeout_s, worker.burst) == (700, True)
        assert worker.redis_settings == RedisSettings.from_dsn(redis_url)
        assert worker.keep_result_s == 0  # a kept result would refuse the next enqueue
        assert all(job.run_at_startup and job.keep_result_s for job in worker.cron_jobs)
    assert [w.queue_name for w in lanes] == [MAIN_QUEUE, DELIVERIES_QUEUE, CONTROL_QUEUE]
    assert set(main.functions) == {
        POLL_STORIES,
        CAPTURE_STORY,
        POLL_THREADS,
        CAPTURE_THREADS_POST,
        CAPTURE_ACCOUNT_INSIGHTS,
        LIST_IG_MEDIA,
        CAPTURE_IG_MEDIA,
    }
    assert main.cron_jobs == []  # a tick in the main queue would wait behind the captures
    assert set(deliveries.functions) == {PROCESS_DELIVERY, "sweep_deliveries"}
    names = [job.name for job in control.cron_jobs]
    assert names == ["schedule_due", "refresh_tokens", "send_notices"]
    assert control.cron_jobs[0].second == set(range(0, 60, settings.schedule_tick_seconds))
    assert deliveries.cron_jobs[0].second == {0, 10, 20, 30, 40, 50}  # every 10 s
    # Each job's timeout fits the job, and arq's in-progress key lives as long as the
    # longest of a lane: a delivery's is 70 s, not JOB_TIMEOUT_SECONDS + 10.
    timeouts = {name: f.timeout_s for w in (main, deliveries) for name, f in w.functions.items()}
    assert timeouts[PROCESS_DELIVERY] == 60
    assert timeouts[CAPTURE_STORY] == timeouts[CAPTURE_THREADS_POST] == 120
    assert timeouts[POLL_STORIES] == timeouts[POLL_THREADS] == 700
    assert (deliveries.in_progress_timeout_s, main.in_progress_timeout_s) == (70, 710)


def test_redis_settings_from_urls(sqlite_url: str) -> None:
    """redis:// and unix:// URLs both work; a missing or foreign URL is a ConfigError."""
    unix = redis_settings(make_settings(sqlite_url, "unix:///tmp/r.sock?db=2"))
    assert (unix.unix_socket_path, unix.database) == ("/tmp/r.sock", 2)
    with pytest.raises(ConfigError, match="REDIS_URL must be set"):
        redis_settings(make_settings(sqlite_url, None))
    with pytest.raises(ConfigError, match="REDIS_URL is not a redis://"):
        redis_settings(make_settings(sqlite_url, "http://127.0.0.1:6379"))


def test_startup_shares_settings_and_engine_and_shutdown_releases_them(
    engine: Engine, settings: Settings
) -> None:
    """Jobs find settings and a working engine in ctx; shutdown takes the engine back."""
    add_account(engine)
    delivery = add_delivery(engine, story_body())
    worker = run_burst(settings, [delivery])
    assert worker.jobs_complete == 1
    assert delivery_row(engine, delivery).status == "processed"  # done through ctx["engine"]
    assert worker.ctx["settings"] is settings
    assert "engine" not in worker.ctx


def test_each_job_logs_one_line_with_duration_and_try(
    engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """One INFO line per delivery job, its ids, duration and try in `extra`."""
    add_account(engine)
    delivery = add_delivery(engine, story_body())
    with caplog.at_level(logging.INFO, logger="workers.webhooks.process"):
        run_burst(settings, [delivery])
    (record,) = [r for r in caplog.records if r.name == "workers.webhooks.process"]
    assert record.getMessage().startswith(f"delivery {delivery}: processed in ")
    assert record.__dict__["delivery_id"] == delivery
    assert record.__dict__["job_id"] == delivery_job_id(delivery)
    assert record.__dict__["job_try"] == 1
    assert record.__dict__["duration_ms"] >= 0


def test_sweeper_reenqueues_after_redis_flush(engine: Engine, settings: Settings) -> None:
    """Deliveries stranded by FLUSHDB are swept back into arq and then processed."""
    add_account(engine)
    stale = utc_ago(hours=1)
    delivery = add_delivery(engine, story_body(), enqueued_at=stale)
    fresh = add_delivery(engine, story_body(time=5), enqueued_at=utc_ago(seconds=0))
    client = redis.Redis.from_url(settings.redis_url or "")

    async def flush_and_sweep() -> int:
        pool = await create_pool(RedisSettings.from_dsn(settings.redis_url or ""))
        try:
            await enqueue_deliveries(pool, [delivery, fresh])
            await pool.flushdb()
            ctx: Context = {"settings": settings, "engine": engine, "redis": pool}
            return await sweep_deliveries(ctx)
        finally:
            await pool.aclose()

    assert asyncio.run(flush_and_sweep()) == 1  # the fresh one is not due yet
    assert client.zrange(DELIVERIES_QUEUE, 0, -1) == [delivery_job_id(delivery).encode()]
    client.close()
    worker = run_burst(settings, [])
    assert worker.jobs_complete == 1
    assert delivery_row(engine, delivery).status == "processed"
    assert delivery_row(engine, fresh).status == "enqueued"


def test_a_starting_worker_sweeps_at_once(engine: Engine, settings: Settings) -> None:
    """The sweep runs when a worker starts, so stale deliveries need no Redis entry."""
    add_account(engine)
    delivery = add_delivery(engine, story_body(), enqueued_at=utc_ago(hours=1))
    worker = run_burst(settings, [], cron_jobs=True)
    assert worker.jobs_complete >= 2  # the sweep, then the delivery it re-enqueued
    assert delivery_row(engine, delivery).status == "processed"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_database_outage_retries_with_backoff(backend: str, redis_url: str, tmp_path: Path) -> None:
    """When the database is unreachable the job is deferred by arq's Retry, not failed."""
    down = {
        "sqlite": f"sqlite:///{tmp_path}/no/such/dir/archiver.db",
        "postgresql": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test",
    }[backend]
    settings = make_settings(down, redis_url)

    async def one_try() -> tuple[int, int, float]:
        pool = await create_pool(RedisSettings.from_dsn(redis_url))
        await enqueue_deliveries(pool, [1])
        worker = build_worker(
            settings,
            lane=DELIVERIES,
            burst=True,
            poll_delay=0,
            redis_pool=pool,
            handle_signals=False,
            cron_jobs=False,
        )
        worker.max_burst_jobs = 1  # stop after the first try instead of waiting out retries
        started = time.time()
        try:
            await worker.main()
            score = await pool.zscore(DELIVERIES_QUEUE, delivery_job_id(1))
        finally:
            await worker.close()
        assert score is not None
        return worker.jobs_retried, worker.jobs_failed, score / 1000 - started

    retried, failed, deferred_by = asyncio.run(one_try())
    assert (retried, failed) == (1, 0)
    assert deferred_by >= retry_delay(1) - 0.5  # queued again, due after the back-off
    assert [retry_delay(n) for n in (1, 2, 3, 4, 9)] == [1, 2, 4, 8, 60]


async def both_lanes_up(client: ArqRedis) -> bool:
    return bool(await client.exists(HEALTH_KEY, DELIVERIES_HEALTH_KEY) == 2)


@pytest.mark.anyio
async def test_run_worker_stops_when_cancelled(sqlite_url: str, redis_url: str) -> None:
    """Sharing a loop (`archiver run`), the worker runs until cancelled, then cleans up."""
    settings = make_settings(sqlite_url, redis_url)
    client = ArqRedis.from_url(redis_url)
    task = asyncio.create_task(run_worker(settings, handle_signals=False))
    try:
        await wait_for(lambda: both_lanes_up(client))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not await client.exists(HEALTH_KEY, DELIVERIES_HEALTH_KEY)  # both lanes closed
        assert not await client.smembers(WORKERS_KEY)  # a clean stop is not a death
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_run_worker_returns_on_sigterm(sqlite_url: str, redis_url: str) -> None:
    """As `archiver worker`, SIGTERM stops the worker gracefully and run_worker returns."""
    settings = make_settings(sqlite_url, redis_url)
    client = ArqRedis.from_url(redis_url)
    task = asyncio.create_task(run_worker(settings))
    try:
        await wait_for(lambda: both_lanes_up(client))
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the worker's loop handler
        await asyncio.wait_for(task, timeout=10)  # returns, neither raising nor cancelled
        assert task.done()
        assert not task.cancelled()
        assert not await client.exists(HEALTH_KEY, DELIVERIES_HEALTH_KEY)
    finally:
        task.cancel()
        await client.aclose()
