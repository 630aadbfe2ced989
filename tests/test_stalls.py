"""No silent stalls: whatever a job's outcome, the next scheduler tick (or sweep) can enqueue
its work again. arq refuses to enqueue an id whose result it keeps, and job ids here are
deterministic; so the workers keep no results, and a job that failed at arq's level (here:
run out of tries, as after repeated kills) is simply enqueued and run again.

Real workers, real Redis, the simulator over HTTP, both databases.
"""

from __future__ import annotations

from datetime import datetime

import pytest
import redis
from arq.connections import RedisSettings, create_pool
from arq.constants import result_key_prefix, retry_key_prefix
from sqlalchemy.engine import Engine

from core.config import Settings
from jobqueue.names import (
    POLL_STORIES,
    capture_job_id,
    delivery_job_id,
    story_poll_job_id,
    threads_poll_job_id,
)
from models.types import utcnow
from tests.conftest import make_settings
from tests.metasim_fixtures import RunningSim
from tests.test_deliveries import add_account, add_delivery, delivery_row, run_burst, story_body
from tests.test_stories import DAY, account_row, register, stories, story_settings, story_snapshots
from tests.test_threads_jobs import account_of, threads_settings
from tests.test_threads_jobs import register as register_threads
from tests.workers_harness import eventually, job_context, running_workers
from workers.captures.jobs import CAPTURE_MAX_TRIES
from workers.captures.stories import LISTING_MAX_TRIES
from workers.captures.threads_polls import POLL_MAX_TRIES
from workers.captures.tick import schedule_due
from workers.main import build_worker
from workers.webhooks.process import DELIVERY_MAX_TRIES


def out_of_tries(redis_url: str, job_id: str, tries: int) -> None:
    """The job's next run is its (tries + 1)th: arq fails it with "max retries exceeded",
    the state a job reaches after being killed or cancelled `tries` times."""
    client = redis.Redis.from_url(redis_url)
    client.set(retry_key_prefix + job_id, tries)
    client.close()


def results(redis_url: str) -> list[str]:
    """The results arq keeps, but the cron ticks' (which keep theirs on purpose)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key.decode() for key in client.scan_iter(f"{result_key_prefix}*")]
    finally:
        client.close()
    crons = ("schedule_due:", "refresh_tokens:", "sweep_deliveries:", "send_notices:")
    return [key for key in keys if not key.removeprefix(result_key_prefix).startswith(crons)]


def epoch(when: datetime) -> int:
    return int(when.timestamp())


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.mark.anyio
async def test_a_failed_job_keeps_no_result_and_its_id_can_be_enqueued_again(
    sqlite_url: str, redis_url: str
) -> None:
    """A job that fails in arq (here: called with no arguments) leaves no result key, so
    enqueueing the same id again is accepted at once rather than refused for an hour."""
    settings = make_settings(sqlite_url, redis_url)
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    await pool.enqueue_job(POLL_STORIES, _job_id="stories:1:0")
    worker = build_worker(
        settings, burst=True, poll_delay=0, redis_pool=pool, handle_signals=False, cron_jobs=False
    )
    try:
        await worker.main()
        assert (worker.jobs_failed, worker.jobs_complete) == (1, 0)
        assert await pool.enqueue_job(POLL_STORIES, 7, _job_id="stories:1:0") is not None
    finally:
        await worker.close()
    assert results(redis_url) == []


@pytest.mark.anyio
async def test_a_listing_that_failed_runs_again_at_the_next_tick(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """The tick enqueues the same listing id again after arq failed it; it runs and lists."""
    ig = register(engine, sim.world)
    story = sim.world.add_story(ig, age_seconds=DAY - 3600)
    account = account_row(engine, ig)
    assert account.id is not None
    job_id = story_poll_job_id(account.id, epoch(account.created_at))
    out_of_tries(redis_url, job_id, LISTING_MAX_TRIES)
    settings = story_settings(url_of(engine), redis_url, sim, story_poll_seconds=900)
    async with running_workers(settings) as (main, _deliveries, _control):
        await eventually(lambda: account_row(engine, ig).stories_polled_at, timeout=10)
    assert main.jobs_failed >= 1  # the run out of tries
    assert story.id in stories(engine)
    assert results(redis_url) == []


@pytest.mark.anyio
async def test_a_capture_that_failed_runs_again_at_the_next_tick(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """The story's first capture fails in arq; the tick enqueues it again and it is taken."""
    ig = register(engine, sim.world)
    story = sim.world.add_story(ig, age_seconds=DAY - 3600)
    out_of_tries(redis_url, capture_job_id("instagram", story.id, "first"), CAPTURE_MAX_TRIES)
    settings = story_settings(
        url_of(engine), redis_url, sim, story_poll_seconds=900, story_snapshot_seconds=600
    )
    async with running_workers(settings) as (main, _deliveries, _control):
        await eventually(lambda: story_snapshots(engine, story.id), timeout=10)
    assert main.jobs_failed >= 1
    assert [s.slot for s in story_snapshots(engine, story.id)] == ["first"]
    assert results(redis_url) == []


@pytest.mark.anyio
async def test_a_threads_poll_that_failed_runs_again_at_the_next_tick(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """The same for a Threads poll: failed in arq, enqueued again, polled."""
    account = register_threads(engine, sim.world)
    row = account_of(engine, account.id)
    assert row.id is not None
    out_of_tries(redis_url, threads_poll_job_id(row.id, epoch(row.created_at)), POLL_MAX_TRIES)
    settings = threads_settings(engine, redis_url, sim, threads_poll_seconds=3600)
    async with running_workers(settings) as (main, _deliveries, _control):
        await eventually(lambda: account_of(engine, row.id).threads_polled_at, timeout=10)
    assert main.jobs_failed >= 1
    assert results(redis_url) == []


def test_a_delivery_that_failed_is_swept_back_and_processed(
    engine: Engine, settings: Settings
) -> None:
    """A delivery job failed in arq stays pending on its row; the sweeper enqueues the same
    id again and it is processed."""
    add_account(engine)
    delivery = add_delivery(engine, story_body(), enqueued_at=utcnow().replace(year=2020))
    out_of_tries(settings.redis_url or "", delivery_job_id(delivery), DELIVERY_MAX_TRIES)
    failed = run_burst(settings, [delivery])
    assert (failed.jobs_failed, delivery_row(engine, delivery).status) == (1, "enqueued")
    swept = run_burst(settings, [], cron_jobs=True)  # the sweep runs at start
    assert swept.jobs_complete >= 2  # the sweep, then the delivery
    assert delivery_row(engine, delivery).status == "processed"
    assert results(settings.redis_url or "") == []


@pytest.mark.anyio
async def test_a_tick_runs_unless_a_later_one_started_after_it_was_due(
    sqlite_url: str, redis_url: str
) -> None:
    """Ticks a second apart all run (arq enqueues the next while starting this one); a tick
    that waited in a backed-up queue until after a later one started is skipped."""
    settings = make_settings(sqlite_url, redis_url)
    now_ms = int(utcnow().timestamp() * 1000)
    async with job_context(settings) as ctx:
        ran = [await schedule_due(ctx | {"score": now_ms + n * 1000}) for n in range(2)]
        stale = await schedule_due(ctx | {"score": now_ms - 5000})
    assert ["superseded" in counts for counts in ran] == [False, False]
    assert stale == {"superseded": 1}
