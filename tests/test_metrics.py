"""/metrics shows what the workers did and what is behind: Meta calls by status, pauses, failed
jobs, captures, overdue work, accounts with a problem, token and data-access expiry."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.config import Settings
from models.accounts import Account
from models.db import create_db_engine
from models.snapshots import Media
from models.types import utcnow
from receiver.metrics import labels, number
from reports.figures import APP_PAUSE_KEYS, JOB_FAILURES_KEY, read_gauges, stat_field
from reports.overdue import FINAL_SLOT, KINDS, overdue_grace, overdue_seconds
from reports.pauses import THREADS_APP_PAUSE_KEY
from tests.conftest import REDIS_URL, make_settings
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


async def _worker_activity(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        pacer = Pacer(redis, minute_seconds=1.0)
        for status in ("200", "200", "400", "error"):
            await pacer.count_call("ig:1784", status)
        await pacer.count_call("threads:2500", "200")
        await pacer.pause("ig:1784", 0.01, reason="throttled")
    finally:
        await redis.aclose()


def test_metrics_expose_worker_figures_and_no_token(
    settings: Settings, engine: Engine, redis_url: str
) -> None:
    """Counters from Redis and gauges from the database appear; the token never does."""
    asyncio.run(_worker_activity(redis_url))
    with Session(engine) as session:
        account = Account(name="shop", ig_user_id="1784", ig_token=TOKEN,
                          ig_token_expires_at=utcnow() + timedelta(days=30))  # fmt: skip
        session.add(account)
        session.flush()
        assert account.id is not None
        for n, state in enumerate(("final_captured", "final_captured", "missed")):
            session.add(Media(account_id=account.id, platform="instagram", subject_type="story",
                              media_id=f"18{n}", capture_state=state))  # fmt: skip
        session.commit()
    with serve_ops(settings) as (_client, ops):
        text = ops.get("/metrics").text
    assert 'archiver_meta_calls_total{platform="instagram",status="200"} 2' in text
    assert 'archiver_meta_calls_total{platform="instagram",status="error"} 1' in text
    assert 'archiver_meta_calls_total{platform="threads",status="200"} 1' in text
    assert 'archiver_throttle_pauses_total{platform="instagram",reason="throttled"} 1' in text
    assert 'archiver_media{subject_type="story",state="final_captured"} 2' in text
    assert 'archiver_media{subject_type="story",state="missed"} 1' in text
    days = next(line for line in text.splitlines() if line.startswith("archiver_token_days_left"))
    assert 29.9 < float(days.split()[-1]) <= 30.0
    assert TOKEN not in text


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
    assert gauges.token_days == {"instagram": 20.0, "threads": 45.0}
    assert gauges.data_access_days == {"instagram": 7.0}


async def _failures_and_app_pause(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        await redis.hset(JOB_FAILURES_KEY, mapping={"capture_story|retry": 3,
                                                    "poll_stories|gave_up": 1})  # fmt: skip
        pacer = Pacer(redis, jitter=0)
        await pacer.pause(pacer.app_of("threads:2600"), 120, reason="throttled")
    finally:
        await redis.aclose()


def test_metrics_expose_failures_overdue_work_problems_and_pauses(
    settings: Settings, engine: Engine, redis_url: str
) -> None:
    """/metrics: failed jobs, oldest overdue per kind, accounts with a problem, app-wide pauses
    per platform, data-access expiry and tokens by expiry; the token never."""
    asyncio.run(_failures_and_app_pause(redis_url))
    now = utcnow()
    overdue_fleet(engine, now)
    with Session(engine) as session:
        add_account(session, "9", ig_problem="permission denied (#10)",
                    ig_data_access_expires_at=now + timedelta(days=30),
                    ig_token_checked_at=now)  # fmt: skip
        session.commit()
    with serve_ops(settings) as (_client, ops):
        text = ops.get("/metrics").text
    values = samples(text)
    assert values['archiver_job_failures_total{function="capture_story",outcome="retry"}'] == 3
    assert values['archiver_job_failures_total{function="poll_stories",outcome="gave_up"}'] == 1
    assert 119 < values['archiver_app_paused_seconds{platform="threads"}'] <= 120
    assert values['archiver_app_paused_seconds{platform="instagram"}'] == 0
    assert 200 <= values['archiver_oldest_overdue_seconds{kind="story_capture"}'] < 230
    assert 70 <= values['archiver_oldest_overdue_seconds{kind="story_final"}'] < 100
    assert values['archiver_overdue{kind="story_capture"}'] == 2
    assert values['archiver_accounts_with_problem{platform="instagram"}'] == 1
    assert values['archiver_accounts_with_problem{platform="threads"}'] == 0
    assert 29.9 < values['archiver_data_access_days_left{platform="instagram"}'] <= 30
    assert values['archiver_tokens{platform="instagram",expiry="never"}'] == 1
    assert "# TYPE archiver_job_failures_total counter" in text
    assert "# TYPE archiver_oldest_overdue_seconds gauge" in text
    assert TOKEN not in text


def samples(text: str) -> dict[str, float]:
    """The exposition's samples by `name{labels}`."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_a_redis_outage_still_shows_overdue_work(sqlite_url: str) -> None:
    """Redis down: the database gauges are served, the Redis counters are left out (not 0)."""
    with Session(create_db_engine(sqlite_url)) as session:
        add_account(session, "1", next_story_poll_at=utcnow() - timedelta(minutes=10))
        session.commit()
    settings = make_settings(sqlite_url, "redis://127.0.0.1:1/0")
    with serve_ops(settings) as (_client, ops):
        values = samples(ops.get("/metrics").text)
    assert values['archiver_oldest_overdue_seconds{kind="story_poll"}'] >= 600
    assert not [name for name in values if name.startswith("archiver_job_failures_total")]
    assert not [name for name in values if name.startswith("archiver_app_paused_seconds")]


def test_a_database_fault_still_serves_the_counters(sqlite_url: str, redis_url: str) -> None:
    """The account table unreadable: the gauges are left out, the Redis counters still served."""
    asyncio.run(_failures_and_app_pause(redis_url))
    engine = create_db_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE account RENAME TO account_gone"))
    engine.dispose()
    with serve_ops(make_settings(sqlite_url, redis_url)) as (_client, ops):
        response = ops.get("/metrics")
    values = samples(response.text)
    assert response.status_code == 200
    assert values['archiver_job_failures_total{function="capture_story",outcome="retry"}'] == 3
    assert not [name for name in values if name.startswith("archiver_oldest_overdue_seconds")]


def test_exposition_numbers_and_labels() -> None:
    """Counts print exactly (no 1e+06), seconds to the millisecond; label values escaped."""
    assert (number(1_234_567), number(2.0), number(86400.12345)) == ("1234567", "2.0", "86400.123")
    assert labels(function='a"b\\c\nd') == 'function="a\\"b\\\\c\\nd"'


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
