"""Metrics read at scrape time: the archive-wide gauges a worker serves (captures, overdue work,
accounts with a problem, token and data-access expiry per account, queue depth, app-wide
pauses), each store's part left out when it fails; and the receiver's /metrics, which carries
its own figures only."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from redis.asyncio import Redis
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.config import Settings
from jobqueue.names import DELIVERIES_QUEUE, MAIN_QUEUE
from models.accounts import Account
from models.db import create_db_engine
from models.notices import Notice
from models.snapshots import Media
from models.types import utcnow
from reports.archive_metrics import ArchiveCollector
from reports.figures import APP_PAUSE_KEYS, JOB_FAILURES_KEY, read_gauges, stat_field
from reports.overdue import FINAL_SLOT, KINDS, overdue_grace, overdue_seconds
from reports.pauses import THREADS_APP_PAUSE_KEY
from reports.worker_metrics import endpoint_of
from tests.conftest import REDIS_URL
from tests.test_receiver import serve_ops
from workers.captures.slots import FINAL
from workers.meta.pacing import Pacer

TOKEN = "IGQVJ-secret-token-0123456789"


def test_stat_fields_name_the_platform() -> None:
    """The pacer's keys map to the platform label the exposition uses."""
    assert stat_field("ig:1784", "200") == "instagram|200"
    assert stat_field("app", "slowdown") == "instagram|slowdown"
    assert stat_field("threads:2500", "500") == "threads|500"
    assert stat_field("app:threads", "slowdown") == "threads|slowdown"


def test_endpoints_are_templates_without_ids() -> None:
    """Meta call paths become low-cardinality labels: no version, no account or media id."""
    assert endpoint_of("/v21.0/17841405309211844/stories") == "/{id}/stories"
    assert endpoint_of("/v21.0/18023345989012587/insights") == "/{id}/insights"
    assert endpoint_of("/v1.0/me") == "/me"
    assert endpoint_of("/refresh_access_token") == "/refresh_access_token"
    assert endpoint_of("/v1.0/3141-odd.id/threads_insights") == "/{id}/threads_insights"
    assert endpoint_of("/simulated/v21.0/17841405309211844/stories") == "/{id}/stories"


async def _worker_activity(redis_url: str) -> None:
    """What workers leave in Redis: calls, a pause, failed jobs."""
    redis = Redis.from_url(redis_url)
    try:
        pacer = Pacer(redis, minute_seconds=1.0)
        for status in ("200", "400"):
            await pacer.count_call("ig:1784", status, path="/v21.0/1/stories", seconds=0.1)
        await pacer.pause("ig:1784", 0.01, reason="throttled")
        await redis.hset(JOB_FAILURES_KEY, mapping={"capture_story|retry": 3})
    finally:
        await redis.aclose()


def test_the_receiver_serves_its_own_figures_only(
    settings: Settings, engine: Engine, redis_url: str
) -> None:
    """The receiver's /metrics: its deliveries (every outcome from 0) and ingest histogram,
    never the workers' calls, jobs or archive gauges, which each worker serves itself (a sum
    over receivers and workers counts nothing twice)."""
    asyncio.run(_worker_activity(redis_url))
    with Session(engine) as session:
        add_media(session, add_account(session, "1784"), "18", utcnow())
        session.commit()
    with serve_ops(settings) as (_client, ops):
        text = ops.get("/metrics").text
    values = samples(text)
    assert values['archiver_deliveries_total{outcome="stored",platform="instagram"}'] == 0
    assert values['archiver_deliveries_total{outcome="unavailable",platform="threads"}'] == 0
    assert "# TYPE archiver_delivery_ingest_seconds histogram" in text
    assert values["archiver_delivery_backlog"] == 0
    for foreign in ("meta_calls", "throttle_pauses", "jobs", "media", "overdue", "token"):
        assert f"archiver_{foreign}" not in text


NOW = utcnow()  # for the pure functions; database tests take the time when they start
GRACE = overdue_grace(5)  # two ticks of 5 s


def add_account(session: Session, ig_user_id: str, **fields: Any) -> int:
    account = Account(name=f"a{ig_user_id}", ig_user_id=ig_user_id, ig_token=TOKEN, **fields)
    session.add(account)
    session.flush()
    assert account.id is not None
    return account.id


def add_media(
    session: Session, account_id: int, media_id: str, due: datetime, **fields: Any
) -> None:
    values: dict[str, Any] = {"platform": "instagram", "subject_type": "story", "next_slot": "s1"}
    if fields.get("platform") == "threads":
        values |= {"subject_type": "threads_post", "capture_state": "tracked"}
    session.add(Media(account_id=account_id, media_id=media_id, next_capture_at=due,
                      **(values | fields)))  # fmt: skip


def overdue_fleet(engine: Engine, now: datetime) -> None:
    """One overdue item of each kind, plus work that is on time, closed, or not scheduled."""

    def ago(seconds: float) -> datetime:
        return now - timedelta(seconds=seconds)

    linked = {"threads_user_id": "2600", "threads_token": TOKEN}
    with Session(engine) as session:
        late = add_account(session, "1", next_story_poll_at=ago(100),
                           next_threads_poll_at=ago(50), **linked)  # fmt: skip
        add_account(session, "2", next_story_poll_at=ago(30), next_threads_poll_at=ago(3),
                    threads_user_id="2601", threads_token=TOKEN)  # fmt: skip
        add_account(session, "3", next_story_poll_at=ago(4))  # within the grace
        stuck = add_account(session, "4", state="reauth_required", next_story_poll_at=ago(900),
                            threads_user_id="2602", threads_state="reauth_required",
                            next_threads_poll_at=ago(900))  # fmt: skip
        add_account(session, "5", threads_user_id="2603", next_story_poll_at=ago(1),
                    next_threads_poll_at=ago(900))  # no Threads token: not polled  # fmt: skip
        add_media(session, late, "s-late", ago(200))
        add_media(session, late, "s-later", ago(20))
        add_media(session, late, "s-final", ago(70), next_slot="final")
        add_media(session, late, "s-on-time", ago(2))
        add_media(session, late, "s-closed", ago(5000), capture_state="missed")
        add_media(session, late, "p-late", ago(40), platform="threads", next_slot="h1")
        add_media(session, stuck, "s-stuck", ago(5000))
        add_media(session, stuck, "p-stuck", ago(5000), platform="threads", next_slot="h1")
        session.commit()


def test_oldest_overdue_work_per_kind(engine: Engine) -> None:
    """Per kind, how many items are due more than two ticks ago and how old the oldest is;
    on-time, closed and unscheduled work (a reauth_required side, no token) is left out."""
    now = utcnow()
    overdue_fleet(engine, now)
    gauges = read_gauges(engine, grace=GRACE, now=now)
    found = {kind: (o.count, round(o.oldest_seconds, 3)) for kind, o in gauges.overdue.items()}
    assert found == {
        "story_poll": (2, 100.0),
        "story_capture": (2, 200.0),
        "story_final": (1, 70.0),
        "threads_poll": (1, 50.0),
        "threads_capture": (1, 40.0),
    }


def test_nothing_overdue_is_zero_for_every_kind(engine: Engine) -> None:
    """An empty or healthy archive reports every kind, at 0 (not absent)."""
    gauges = read_gauges(engine, grace=GRACE, now=NOW)
    found = {kind: (o.count, o.oldest_seconds) for kind, o in gauges.overdue.items()}
    assert found == dict.fromkeys(KINDS, (0, 0.0))
    assert gauges.problems == {"instagram": 0, "threads": 0}


def test_an_insights_problem_counts_its_account_once_and_notices_by_state(
    engine: Engine,
) -> None:
    """The Instagram side counts an account with a listing and an insights problem once, and
    one with only an insights or a feed/Reels listing problem; notices by kind and state."""
    with Session(engine) as session:
        add_account(session, "1", ig_problem="(#10)", ig_insights_problem="(#100)")
        add_account(session, "2", ig_insights_problem="(#100)")
        add_account(session, "3", media_problem="(#10)")
        add_account(session, "4")
        session.add(Notice(dedupe_key="a", kind="reauth", subject="s", text="t"))
        session.add(Notice(dedupe_key="b", kind="reauth", subject="s", text="t",
                           state="undeliverable"))  # fmt: skip
        session.commit()
    gauges = read_gauges(engine, grace=GRACE, now=NOW)
    assert gauges.problems == {"instagram": 3, "threads": 0}
    assert gauges.notices == {("reauth", "pending"): 1, ("reauth", "undeliverable"): 1}


def test_accounts_problems_and_token_expiry(engine: Engine) -> None:
    """Accounts by state and with a problem per side; tokens by what is known of their expiry
    (a Facebook Login token that debug_token found without expiry never expires)."""
    now = utcnow()
    with Session(engine) as session:
        add_account(session, "1", ig_problem="permission denied (#10)", ig_failures=2,
                    ig_token_expires_at=now + timedelta(days=20))  # fmt: skip
        add_account(session, "2", ig_data_access_expires_at=now + timedelta(days=80),
                    ig_token_checked_at=now,
                    threads_user_id="2600", threads_problem="(#100)", threads_failures=1,
                    threads_token_expires_at=now + timedelta(days=45))  # fmt: skip
        add_account(session, "3", login="instagram", state="reauth_required",
                    ig_data_access_expires_at=now + timedelta(days=7))  # fmt: skip
        session.commit()
    gauges = read_gauges(engine, grace=GRACE, now=now)
    assert gauges.problems == {"instagram": 1, "threads": 1}
    assert gauges.accounts == {
        ("instagram", "active"): 2,
        ("instagram", "reauth_required"): 1,
        ("threads", "active"): 1,
    }
    assert gauges.tokens == {
        ("instagram", "dated"): 1,
        ("instagram", "never"): 1,
        ("instagram", "unknown"): 1,
        ("threads", "dated"): 1,
    }
    expiries = {(e.platform, e.account, e.what): e.at for e in gauges.expiries}
    assert expiries == {
        ("instagram", "a1", "token"): now + timedelta(days=20),
        ("threads", "a2", "token"): now + timedelta(days=45),
        ("instagram", "a2", "data_access"): now + timedelta(days=80),
        ("instagram", "a3", "data_access"): now + timedelta(days=7),
    }


async def _app_pause_and_queue(redis_url: str) -> None:
    """The Threads app paused for 120 s; one job due now and one deferred per queue."""
    redis = Redis.from_url(redis_url)
    try:
        pacer = Pacer(redis, jitter=0)
        await pacer.pause(pacer.app_of("threads:2600"), 120, reason="throttled")
        now_ms = int(time.time() * 1000)
        for queue in (MAIN_QUEUE, DELIVERIES_QUEUE):
            await redis.zadd(queue, {"due": now_ms - 1000, "deferred": now_ms + 60_000})
    finally:
        await redis.aclose()


@contextmanager
def collector_on(database_url: str, redis_url: str | None) -> Iterator[CollectorRegistry]:
    """A registry holding the archive-wide collector, as a worker process serves it."""
    engine = create_db_engine(database_url)
    collector = ArchiveCollector(engine, redis_url, grace=GRACE)
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        yield registry
    finally:
        collector.close()


def exposition(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_archive_gauges_overdue_work_problems_expiry_queues_and_pauses(
    database_url: str, engine: Engine, redis_url: str
) -> None:
    """Oldest overdue per kind, accounts with a problem, tokens by expiry kind, each account's
    token and data-access expiry as a Unix timestamp, queue depth (deferred jobs not counted)
    and app-wide pauses per platform; the token never."""
    asyncio.run(_app_pause_and_queue(redis_url))
    now = utcnow()
    overdue_fleet(engine, now)
    expires, access = now + timedelta(days=30), now + timedelta(days=60)
    with Session(engine) as session:
        shop = add_account(session, "9", ig_problem="permission denied (#10)",
                           ig_token_expires_at=expires, ig_data_access_expires_at=access,
                           ig_token_checked_at=now)  # fmt: skip
        session.commit()
    with collector_on(database_url, redis_url) as registry:
        text = exposition(registry)
    values = samples(text)
    who = f'account="a9",account_id="{shop}",platform="instagram"'
    assert values[f"archiver_token_expiry_timestamp_seconds{{{who}}}"] == expires.timestamp()
    assert values[f"archiver_data_access_expiry_timestamp_seconds{{{who}}}"] == access.timestamp()
    assert 119 < values['archiver_app_paused_seconds{platform="threads"}'] <= 120
    assert values['archiver_app_paused_seconds{platform="instagram"}'] == 0
    assert values[f'archiver_queue_depth{{queue="{MAIN_QUEUE}"}}'] == 1
    assert values[f'archiver_queue_depth{{queue="{DELIVERIES_QUEUE}"}}'] == 1
    assert 200 <= values['archiver_oldest_overdue_seconds{kind="story_capture"}'] < 230
    assert 70 <= values['archiver_oldest_overdue_seconds{kind="story_final"}'] < 100
    assert values['archiver_overdue{kind="story_capture"}'] == 2
    assert values['archiver_media{state="missed",subject_type="story"}'] == 1
    assert values['archiver_accounts{platform="instagram",state="reauth_required"}'] == 1
    assert values['archiver_accounts_with_problem{platform="instagram"}'] == 1
    assert values['archiver_accounts_with_problem{platform="threads"}'] == 0
    assert values['archiver_tokens{expiry="dated",platform="instagram"}'] == 1
    assert "# TYPE archiver_oldest_overdue_seconds gauge" in text
    assert TOKEN not in text


def samples(text: str) -> dict[str, float]:
    """The exposition's samples by `name{labels}` (prometheus_client sorts the labels)."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_a_redis_outage_still_shows_overdue_work(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: the database gauges are served, the Redis ones are left out (not 0), and
    the scrape logs one warning naming the store."""
    with Session(create_db_engine(sqlite_url)) as session:
        add_account(session, "1", next_story_poll_at=utcnow() - timedelta(minutes=10))
        session.commit()
    with (
        collector_on(sqlite_url, "redis://127.0.0.1:1/0") as registry,
        caplog.at_level(logging.WARNING),
    ):
        values = samples(exposition(registry))
    assert values['archiver_oldest_overdue_seconds{kind="story_poll"}'] >= 600
    assert not [name for name in values if name.startswith("archiver_app_paused_seconds")]
    assert not [name for name in values if name.startswith("archiver_queue_depth")]
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: redis figures unavailable: ConnectionError"
    ]


def test_a_silent_redis_is_waited_for_a_bounded_time(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis accepting connections but never answering: the scrape waits the collector's
    timeout, serves the database gauges and leaves Redis's out, with one warning."""
    engine = create_db_engine(sqlite_url)
    with socket.socket() as silent, caplog.at_level(logging.WARNING):
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        collector = ArchiveCollector(engine, url, grace=GRACE, timeout=0.3)
        registry = CollectorRegistry()
        registry.register(collector)
        started = time.monotonic()
        values = samples(exposition(registry))
        waited = time.monotonic() - started
        collector.close()
    assert 0.3 <= waited < 1.5
    assert 'archiver_overdue{kind="story_poll"}' in values
    assert not [name for name in values if name.startswith("archiver_queue_depth")]
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: the redis did not answer within 0.3 s"
    ]


def test_a_database_fault_still_serves_the_redis_gauges(sqlite_url: str, redis_url: str) -> None:
    """The account table unreadable: the database gauges are left out, Redis's still served."""
    asyncio.run(_app_pause_and_queue(redis_url))
    engine = create_db_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE account RENAME TO account_gone"))
    engine.dispose()
    with collector_on(sqlite_url, redis_url) as registry:
        values = samples(exposition(registry))
    assert 119 < values['archiver_app_paused_seconds{platform="threads"}'] <= 120
    assert not [name for name in values if name.startswith("archiver_oldest_overdue_seconds")]
    assert not [name for name in values if name.startswith("archiver_media")]


def test_overdue_rules_match_the_workers() -> None:
    """Status and /metrics read the keys and slot name the workers write."""
    client = Redis.from_url(REDIS_URL)
    pacer = Pacer(client)
    written = {
        "instagram": pacer.pause_key(pacer.app_of("ig:1")),
        "threads": pacer.pause_key(pacer.app_of("threads:1")),
    }
    asyncio.run(client.aclose())
    assert written == APP_PAUSE_KEYS
    assert APP_PAUSE_KEYS["threads"] == THREADS_APP_PAUSE_KEY
    assert FINAL_SLOT == FINAL
    assert overdue_grace(5) == timedelta(seconds=10)
    assert overdue_seconds(NOW - timedelta(seconds=10), now=NOW, grace=GRACE) == 0.0
    assert overdue_seconds(NOW - timedelta(seconds=11), now=NOW, grace=GRACE) == 11.0
    assert overdue_seconds(None, now=NOW, grace=GRACE) is None
