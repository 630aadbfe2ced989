"""A killed worker's jobs run again within seconds: the reclaim script against real Redis, and
a real `archiver worker` SIGKILLed with jobs of both lanes in flight, timed with a stopwatch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import pytest
import redis
import sqlalchemy as sa
from arq.connections import RedisSettings, create_pool
from arq.constants import in_progress_key_prefix
from sqlalchemy.engine import Engine

from jobqueue.names import capture_job_id, delivery_job_id
from jobqueue.outbox import enqueue_deliveries
from tests.metasim_fixtures import running_metasim
from tests.processes import add_stories, archiver_env, fleet, register_accounts, rows
from tests.servers import wait_until
from tests.test_deliveries import add_delivery, delivery_row, story_body
from workers.main import LANES
from workers.runtime.reclaim import MEMBER_PREFIX, WORKERS_KEY, Member, reclaim

KILL_TO_RESUMED_SECONDS = 30  # the bound; arq alone waits JOB_TIMEOUT_SECONDS + 10 s


@pytest.mark.anyio
async def test_reclaim_frees_only_the_jobs_of_members_whose_heartbeat_lapsed(
    redis_url: str,
) -> None:
    """A dead member's in-progress keys go (unless a live member runs the same id now); it is
    forgotten; live members and their jobs are left alone; a second pass finds nothing."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    dead, live = Member("main", dead_after=0.2), Member("main")
    try:
        for member in (dead, live):
            await member.heartbeat(pool)
        await cast(Awaitable[int], pool.sadd(dead.jobs_key, "j1", "j2"))
        await cast(Awaitable[int], pool.sadd(live.jobs_key, "j2", "j3"))
        for job in ("j1", "j2", "j3"):
            await pool.set(in_progress_key_prefix + job, "1")
        await asyncio.sleep(0.3)  # the dead one's heartbeat lapses
        assert await reclaim(pool) == ["j1"]
        assert await reclaim(pool) == []
        held = [await pool.exists(in_progress_key_prefix + job) for job in ("j1", "j2", "j3")]
        assert held == [0, 1, 1]
        assert await cast(Awaitable[set[bytes]], pool.smembers(WORKERS_KEY)) == {live.id.encode()}
        assert not await pool.exists(dead.jobs_key)
        await live.stop(pool)  # a clean stop leaves nothing behind
        assert not await pool.keys(f"{MEMBER_PREFIX}*")
    finally:
        await pool.aclose()


# --- a real worker process killed with jobs in flight -----------------------------------------


@contextmanager
def snapshot_table_locked(engine: Engine) -> Iterator[Callable[[], int]]:
    """Hold PostgreSQL's lock on `snapshot`, so every capture and delivery blocks in flight;
    yield how many writers wait: on it, or behind the one writer of their subject that does
    (store.recording takes a lock per subject first)."""
    with engine.connect() as holder, engine.connect() as observer:
        holder.begin()
        holder.execute(sa.text("LOCK TABLE snapshot IN EXCLUSIVE MODE"))
        waiting = sa.text(
            "SELECT count(*) FROM pg_locks WHERE NOT granted"
            " AND (relation = 'snapshot'::regclass OR locktype = 'advisory')"
        )
        yield lambda: int(observer.execute(waiting).scalar_one())
        holder.rollback()


def running_jobs(client: redis.Redis, pid: int) -> set[str]:
    """The job ids the worker process `pid` runs, over its lanes."""
    members = [m.decode() for m in cast(set[bytes], client.smembers(WORKERS_KEY))]
    mine = [m for m in members if f":{pid}:" in m]
    jobs = (cast(set[bytes], client.smembers(f"{MEMBER_PREFIX}{m}:jobs")) for m in mine)
    return {j.decode() for held in jobs for j in held}


def lanes_up(client: redis.Redis, pid: int) -> bool:
    members = [m.decode() for m in cast(set[bytes], client.smembers(WORKERS_KEY))]
    return sum(f":{pid}:" in m for m in members) == len(LANES)


async def enqueue(redis_url: str, ids: list[int]) -> None:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        await enqueue_deliveries(pool, ids)
    finally:
        await pool.aclose()


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_killed_workers_deliveries_and_capture_finish_within_30_s(
    pg: Engine, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """SIGKILL a worker running three deliveries and a story capture (all blocked on the
    database): another worker finishes them, each once, within 30 s of the kill, although
    JOB_TIMEOUT_SECONDS is the default 300 s."""
    client = redis.Redis.from_url(redis_url)
    with running_metasim(minute_seconds=1.0) as sim:
        (ig,) = register_accounts(pg, sim.world, 1)
        ((media_id,),) = add_stories(sim.world, [ig], expires_in=3600).values()
        bodies = [story_body(ig=ig, time=n, media_id=media_id) for n in range(3)]
        deliveries = [add_delivery(pg, body) for body in bodies]
        capture = capture_job_id("instagram", media_id, "first")
        wanted = {capture, *(delivery_job_id(d) for d in deliveries)}
        env = archiver_env(
            pg_url,
            redis_url,
            sim,
            JOB_TIMEOUT_SECONDS="300",
            WORKER_MAX_JOBS="12",  # 3 delivery slots: all three deliveries in flight at once
            STORY_POLL_SECONDS="900",
            STORY_SNAPSHOT_SECONDS="600",
            LOG_LEVEL="INFO",
        )
        with fleet(tmp_path, env) as procs:
            with snapshot_table_locked(pg) as writers_waiting:
                procs.worker("first")
                first = procs.procs["first"].pid
                wait_until(lambda: lanes_up(client, first), timeout=60, interval=0.1)
                # The capture first: a delivery's uncommitted media row would hold up the
                # listing that starts it.
                wait_until(lambda: capture in running_jobs(client, first), timeout=30)
                asyncio.run(enqueue(redis_url, deliveries))
                wait_until(lambda: running_jobs(client, first) >= wanted, timeout=30)
                wait_until(lambda: writers_waiting() >= 4, timeout=10)
                procs.worker("second")
                second = procs.procs["second"].pid
                wait_until(lambda: lanes_up(client, second), timeout=60, interval=0.1)
                procs.kill("first")
                killed_at = time.monotonic()
            for key in wanted:  # still held by the dead worker: arq alone would wait 310 s
                assert client.exists(in_progress_key_prefix + key)

            def finished() -> bool:
                done = [delivery_row(pg, d).status == "processed" for d in deliveries]
                return all(done) and bool(rows(pg, "SELECT 1 FROM snapshot WHERE slot = 'first'"))

            wait_until(finished, timeout=KILL_TO_RESUMED_SECONDS + 15, interval=0.2)
            resumed_in = time.monotonic() - killed_at
            log = procs.log("second")
    client.close()
    print(f"killed worker's work finished {resumed_in:.1f} s after SIGKILL")
    assert resumed_in < KILL_TO_RESUMED_SECONDS
    assert "jobs of a dead worker run again" in log
    slots = rows(pg, "SELECT subject_id, slot FROM snapshot ORDER BY slot")
    assert slots == [(media_id, "first"), (media_id, "webhook")]  # each once
