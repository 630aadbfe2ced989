"""Faults under load, with real `archiver serve`/`archiver worker` processes: workers killed,
Redis stopped and flushed, PostgreSQL cut off from a receiver, Meta failing and throttling.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis as redis_client
from sqlalchemy.engine import Engine

from models.types import utcnow
from tests.metasim_fixtures import running_metasim
from tests.processes import (
    TcpProxy,
    acked_missing,
    add_stories,
    archiver_env,
    delivery_statuses,
    duplicate_slots,
    fleet,
    post_all,
    register_accounts,
    rows,
    scalar,
    story_deliveries,
    version_gaps,
)
from tests.servers import PrivateRedis, wait_until

pytestmark = pytest.mark.slow


def pending(engine: Engine) -> int:
    return int(
        scalar(
            engine,
            "SELECT COUNT(*) FROM webhook_delivery WHERE status IN ('received', 'enqueued')",
        )
    )


def webhook_versions(engine: Engine) -> Counter[str]:
    found = rows(engine, "SELECT subject_id FROM snapshot WHERE slot = 'webhook'")
    return Counter(subject for (subject,) in found)


def test_workers_killed_repeatedly_lose_and_repeat_nothing(
    pg: Engine, pg_url: str, tmp_path: Path
) -> None:
    """SIGKILL one of three workers every ~1 s under load: all processed, each version once."""
    with (
        PrivateRedis() as redis,
        running_metasim(minute_seconds=1.0) as sim,
        fleet(tmp_path, archiver_env(pg_url, redis.url, sim, JOB_TIMEOUT_SECONDS="2")) as procs,
    ):
        accounts = register_accounts(pg, sim.world, 20)
        url = procs.serve("serve")
        for n in range(3):
            procs.worker(f"worker-{n}")
        procs.wait_serving()
        stories = add_stories(sim.world, accounts, expires_in=20.0, spread=5.0)
        deliveries = story_deliveries(sim.world, stories, 300)
        statuses = post_all([url], deliveries[:150])
        for round_ in range(4):
            victim = f"worker-{round_ % 3}"
            time.sleep(1.0)
            procs.kill(victim)
            procs.worker(victim)
        statuses += post_all([url], deliveries[150:])
        # A killed job is freed once its worker's heartbeat lapses (workers.runtime.reclaim), ~12 s.
        wait_until(lambda: pending(pg) == 0, timeout=60, interval=0.5)
    assert Counter(statuses) == {200: 300}
    assert delivery_statuses(pg) == {"processed": 300}
    media_ids = {m for ids in stories.values() for m in ids}
    assert webhook_versions(pg) == dict.fromkeys(media_ids, 1)
    assert duplicate_slots(pg) == []
    assert version_gaps(pg) == []


@pytest.mark.timeout(170)
def test_redis_stopped_then_flushed_loses_no_delivery_or_final_capture(
    pg: Engine, pg_url: str, tmp_path: Path
) -> None:
    """Redis down, then FLUSHALL: still 200; relay and sweeper catch up; gap finals taken."""
    with PrivateRedis() as redis, running_metasim(minute_seconds=1.0) as sim:
        env = archiver_env(pg_url, redis.url, sim, SWEEP_AFTER_SECONDS="2")
        env["STORY_FINAL_MARGIN_SECONDS"] = "8"
        with fleet(tmp_path, env) as procs:
            accounts = register_accounts(pg, sim.world, 4)
            url = procs.serve("serve")
            procs.worker("worker-0")
            procs.worker("worker-1")
            procs.wait_serving()
            stories = add_stories(sim.world, accounts, expires_in=30.0)
            media_ids = [m for ids in stories.values() for m in ids]
            expires_at = sim.world.story(media_ids[0]).timestamp + timedelta(days=1)
            deliveries = story_deliveries(sim.world, stories, 200)
            statuses = post_all([url], deliveries[:50])
            wait_until(
                lambda: (
                    scalar(pg, "SELECT COUNT(*) FROM media WHERE expires_at IS NOT NULL")
                    == len(media_ids)
                ),
                timeout=20,
                interval=0.3,
            )
            # Stop Redis just before the final slots are due (expiry - 8 s) for 5 s.
            final_due = expires_at - timedelta(seconds=8)
            time.sleep(max(0.0, (final_due - utcnow()).total_seconds() - 2))
            redis.stop()
            down_at = utcnow()
            statuses += post_all([url], deliveries[50:100])
            time.sleep(max(0.0, 5 - (utcnow() - down_at).total_seconds()))
            redis.start()  # an empty Redis: every queued job is gone as well
            back_at = utcnow()
            # `archiver worker` outlives a Redis outage: it starts its worker again by itself.
            revived = procs.revive_workers()
            statuses += post_all([url], deliveries[100:150])
            client = redis_client.Redis.from_url(redis.url)
            try:
                client.flushall()
            finally:
                client.close()
            statuses += post_all([url], deliveries[150:])
            # The sweeper runs every 10 s, re-enqueueing what the flush lost.
            wait_until(lambda: pending(pg) == 0, timeout=60, interval=0.5)
            wait_until(
                lambda: scalar(pg, "SELECT COUNT(*) FROM media WHERE capture_state = 'live'") == 0,
                timeout=30,
                interval=0.5,
            )
            alive = procs.alive()
        assert down_at < final_due < back_at  # the final slots fell in the gap
        assert alive == ["serve", "worker-0", "worker-1"]
    assert revived == []  # no worker process died with Redis
    assert Counter(statuses) == {200: 200}
    assert delivery_statuses(pg) == {"processed": 200}
    finals = rows(
        pg,
        "SELECT m.media_id, m.capture_state, s.captured_at FROM media m"
        " LEFT JOIN snapshot s ON s.id = m.final_snapshot_id",
    )
    assert {state for _, state, _ in finals} == {"final_captured"}
    assert all(back_at <= at < expires_at for _, _, at in finals)
    assert webhook_versions(pg) == dict.fromkeys(media_ids, 1)
    assert version_gaps(pg) == []


def test_postgres_cut_off_answers_503_and_recovers_by_itself(
    pg: Engine, pg_url: str, tmp_path: Path
) -> None:
    """Through a cut TCP proxy: 503 and /readyz 503; restored: 200 again, no 200 lost."""
    with (
        PrivateRedis() as redis,
        TcpProxy(("127.0.0.1", 5432)) as proxy,
        running_metasim(minute_seconds=1.0) as sim,
    ):
        proxied = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        env = archiver_env(proxied, redis.url, sim, INGEST_TIMEOUT_SECONDS="3")
        with fleet(tmp_path, env) as procs:
            stories = add_stories(sim.world, register_accounts(pg, sim.world, 2), expires_in=600)
            deliveries = story_deliveries(sim.world, stories, 300)
            url = procs.serve("serve")
            procs.wait_serving()
            before = post_all([url], deliveries[:100], concurrency=4)
            proxy.cut()
            during = post_all([url], deliveries[100:150], concurrency=4)
            ready_cut = httpx.get(f"{url}/readyz", timeout=10).status_code
            proxy.restore()
            # Meta retries a 503: the same bodies again, until they are taken.
            retried = wait_until(
                lambda: set(post_all([url], deliveries[100:150], concurrency=4)) == {200},
                timeout=30,
                interval=0.5,
            )
            wait_until(
                lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 200,
                timeout=20,
                interval=0.3,
            )
            after = post_all([url], deliveries[150:], concurrency=4)
    assert set(before) == {200}
    assert 503 in during
    assert set(during) <= {200, 503}
    assert ready_cut == 503
    assert retried
    assert set(after) == {200}
    assert acked_missing(pg, [body for body, _ in deliveries]) == 0  # each had its 200
    assert scalar(pg, "SELECT COUNT(*) FROM webhook_delivery") == 300


def test_meta_errors_timeouts_and_throttling_stay_bounded_and_captures_resume(
    pg: Engine, pg_url: str, tmp_path: Path
) -> None:
    """5xx, slow answers and throttling storms: no retry storm; the finals still land."""
    with (
        PrivateRedis() as redis,
        running_metasim(minute_seconds=1.0) as sim,
        fleet(tmp_path, archiver_env(pg_url, redis.url, sim)) as procs,
    ):
        accounts = register_accounts(pg, sim.world, 4)
        procs.worker("worker-0")
        procs.worker("worker-1")
        stories = add_stories(sim.world, accounts, expires_in=30.0)
        wait_until(
            lambda: scalar(pg, "SELECT COUNT(*) FROM snapshot") >= len(accounts),
            timeout=30,
            interval=0.3,
        )
        storm = 3.0
        first = sim.world.log.calls()[-1].seq if sim.world.log.calls() else 0
        started = time.monotonic()
        sim.world.faults.add(status=500, seconds=storm)
        time.sleep(storm)
        sim.world.faults.add(delay=2.0, seconds=storm)  # over the 1 s read timeout
        time.sleep(storm)
        sim.world.faults.add(code=4, status=400, seconds=storm, regain_minutes=1)
        time.sleep(storm)
        stormed = sim.world.log.calls(since=first)
        elapsed = time.monotonic() - started
        wait_until(
            lambda: scalar(pg, "SELECT COUNT(*) FROM media WHERE capture_state = 'live'") == 0,
            timeout=40,
            interval=0.5,
        )
    # Without faults: a listing per account every 2 s, 3 calls per story every 3 s.
    normal = elapsed * len(accounts) * (1 / 2 + 3 / 3)
    faulted = [c for c in stormed if c.fault is not None or c.status >= 400]
    assert faulted  # the storm did hit the workers
    assert len(stormed) <= 3 * normal
    states = rows(pg, "SELECT capture_state, COUNT(*) FROM media GROUP BY 1")
    assert states == [("final_captured", len(accounts))]
    media_ids = {m for ids in stories.values() for m in ids}
    assert {m for (m,) in rows(pg, "SELECT subject_id FROM snapshot WHERE slot = 'final'")} == (
        media_ids
    )
