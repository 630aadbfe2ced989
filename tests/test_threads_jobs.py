"""Threads polling, post schedules and token refresh, end to end: the real arq worker, real
Redis, the simulator over HTTP (the publish and delete webhooks: test_threads_webhooks)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from core.config import Settings
from metasim import World
from models.accounts import Account, MetricUnavailable
from models.snapshots import Media, Snapshot
from models.types import UTCDateTime, utcnow
from tests.conftest import make_settings
from tests.metasim_fixtures import RunningSim
from tests.workers_harness import eventually, running_workers
from workers.captures.threads_polls import INSIGHTS_FLOOR
from workers.captures.token_refresh import refresh_tokens
from workers.main import make_startup, shutdown
from workers.runtime.context import Context

DAY = 86400


def threads_settings(engine: Engine, redis_url: str, sim: RunningSim, **kw: Any) -> Settings:
    """Poll Threads every 2 s; post snapshots 2 s and 4 s after posting, nothing weekly."""
    base: dict[str, Any] = {
        "threads_poll_seconds": 2,
        "story_poll_seconds": 3600,
        "schedule_tick_seconds": 1,
        "meta_minute_seconds": 1.0,
        "threads_post_snapshots": "2s,4s",
        "threads_post_weekly_until": "0s",
    }
    url = engine.url.render_as_string(hide_password=False)
    return make_settings(url, redis_url, **(base | sim.settings_overrides() | kw))


def register(engine: Engine, world: World, *, linked: bool = True, **user: Any) -> Account:
    """An IG account with a Threads profile in the simulator, and both in the archiver."""
    ig = world.add_account()
    th = world.add_threads_user(ig_user_id=ig.ig_user_id if linked else None, **user)
    account = Account(
        name=f"shop{ig.ig_user_id[-4:]}",
        ig_user_id=ig.ig_user_id,
        ig_token=ig.token,
        threads_user_id=th.id,
        threads_token=th.token,
        threads_link_source="operator",
        threads_linked_at=utcnow(),
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(account)
        session.commit()
    return account


def snapshots(engine: Engine, subject_type: str, kind: str = "insights") -> list[Snapshot]:
    with Session(engine) as session:
        stmt = (
            select(Snapshot)
            .where(col(Snapshot.subject_type) == subject_type, col(Snapshot.kind) == kind)
            .order_by(col(Snapshot.id))
        )
        return list(session.exec(stmt))


def history(engine: Engine, where: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM metric_history WHERE {where}"), params)
        return [dict(row._mapping) for row in rows]


def posts(engine: Engine) -> dict[str, Media]:
    with Session(engine) as session:
        stmt = select(Media).where(col(Media.platform) == "threads")
        return {m.media_id: m for m in session.exec(stmt)}


def account_of(engine: Engine, account_id: int | None) -> Account:
    with Session(engine) as session:
        found = session.get(Account, account_id)
        assert found is not None
        return found


@pytest.mark.anyio
async def test_a_poll_snapshots_the_user_and_lists_posts(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """views by day, totals, clicks per URL, followers_count, demographics, and new posts."""
    account = register(engine, sim.world, followers_count=250)
    for age in (3600, 7200):
        sim.world.add_threads_post(account.threads_user_id or "", age_seconds=age)
    sim.world.add_threads_post(account.threads_user_id or "", media_type="REPOST_FACADE")
    async with running_workers(threads_settings(engine, redis_url, sim)):
        await eventually(lambda: len(snapshots(engine, "threads_user", "demographics")) == 1)
        await eventually(lambda: len(snapshots(engine, "threads_post")) >= 2)
    user_rows = history(engine, "subject_type = 'threads_user' AND version = 1")
    views = [r for r in user_rows if r["metric"] == "views"]
    assert views
    assert all(r["end_time"] is not None for r in views)
    metrics = {r["metric"] for r in user_rows}
    assert {"likes", "replies", "reposts", "quotes", "followers_count"} <= metrics
    clicks = [r for r in user_rows if r["metric"] == "clicks" and r["breakdown"] == "link_url"]
    assert {r["dimension"] for r in clicks} >= {"https://example.com/shop"}
    demo = history(engine, "metric = 'follower_demographics'")
    assert {r["breakdown"] for r in demo} == {"country", "city", "age", "gender"}
    states = sorted(m.capture_state for m in posts(engine).values())
    assert states == ["skipped", "tracked", "tracked"] or "done" in states
    insights = sim.world.log.calls(kind="threads_insights")
    assert all(
        int(c.params.get("since", INSIGHTS_FLOOR.timestamp())) >= 1712991600 for c in insights
    )


@pytest.mark.anyio
async def test_views_are_asked_again_with_a_two_day_overlap_and_demographics_daily(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """The second poll asks views from two days before the last stored day, and no
    demographics (once a day); each poll is a new version of the user."""
    register(engine, sim.world)
    async with running_workers(threads_settings(engine, redis_url, sim)):
        await eventually(lambda: len(snapshots(engine, "threads_user")) >= 2, timeout=20)
    views = [
        c for c in sim.world.log.calls(kind="threads_insights") if c.params.get("metric") == "views"
    ]
    assert len(views) >= 2
    ends = [r["end_time"] for r in history(engine, "metric = 'views' AND version = 1")]
    days = [UTCDateTime().process_result_value(end, engine.dialect) for end in ends]
    last_day = max(day for day in days if day is not None)
    since = int(views[1].params["since"])
    assert since == int((last_day - timedelta(days=2)).timestamp())
    demo = [c for c in sim.world.log.calls(kind="threads_insights") if c.params.get("breakdown")]
    assert len(demo) == 4  # one per breakdown, once
    versions = [s.version for s in snapshots(engine, "threads_user")]
    assert versions == list(range(1, len(versions) + 1))


@pytest.mark.anyio
async def test_feature_not_available_is_recorded_once_and_not_asked_again(
    engine: Engine, redis_url: str, sim: RunningSim, caplog: pytest.LogCaptureFixture
) -> None:
    """A profile without Instagram: followers metrics are refused once, then skipped."""
    account = register(engine, sim.world, linked=False)
    with caplog.at_level(logging.WARNING):
        async with running_workers(threads_settings(engine, redis_url, sim)):
            await eventually(lambda: len(snapshots(engine, "threads_user")) >= 3, timeout=20)
    with Session(engine) as session:
        refused = set(session.exec(select(MetricUnavailable.metric)))
    assert refused == {"followers_count", "follower_demographics"}
    asked = [
        c.params["metric"]
        for c in sim.world.log.calls(kind="threads_insights")
        if "followers_count" in c.params.get("metric", "")
    ]
    assert asked == ["followers_count"]  # the first poll only
    assert caplog.text.count("Threads will not give") == 2  # one line per metric group
    assert account_of(engine, account.id).threads_state == "active"


@pytest.mark.anyio
async def test_posts_follow_their_schedule_and_reposts_are_skipped(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """first, then 2s and 4s after posting; done afterwards; REPOST_FACADE never asked."""
    account = register(engine, sim.world)
    post = sim.world.add_threads_post(account.threads_user_id or "", age_seconds=0)
    repost = sim.world.add_threads_post(account.threads_user_id or "", media_type="REPOST_FACADE")

    def done() -> bool:
        return posts(engine).get(post.id, Media()).capture_state == "done"  # type: ignore[call-arg]

    async with running_workers(threads_settings(engine, redis_url, sim)):
        await eventually(done, timeout=20)
    slots = [s.slot for s in snapshots(engine, "threads_post") if s.subject_id == post.id]
    assert slots == ["first", "2s", "4s"]
    assert posts(engine)[repost.id].capture_state == "skipped"
    asked = {c.object_id for c in sim.world.log.calls(kind="threads_media_insights")}
    assert repost.id not in asked
    assert len(sim.world.log.calls(kind="threads_media_insights")) == 3


@pytest.mark.anyio
async def test_tokens_are_refreshed_and_a_dead_one_flags_once(
    engine: Engine, redis_url: str, sim: RunningSim, caplog: pytest.LogCaptureFixture
) -> None:
    """IG Login and Threads tokens older than TOKEN_REFRESH_DAYS are renewed; a token Meta
    will not refresh flags its side for re-authorisation, logged once."""
    ig = sim.world.add_account(login="instagram", token_age_seconds=10 * DAY)
    th = sim.world.add_threads_user(token_age_seconds=10 * DAY)
    dead = sim.world.add_account(login="instagram", token_age_seconds=10 * DAY)
    sim.world.tokens.expire_token(dead.token)
    old = utcnow() - timedelta(days=10)
    with Session(engine, expire_on_commit=False) as session:
        good = Account(name="good", ig_user_id=ig.ig_user_id, ig_token=ig.token,
                       login="instagram", threads_user_id=th.id, threads_token=th.token,
                       created_at=old, threads_linked_at=old)  # fmt: skip
        bad = Account(name="bad", ig_user_id=dead.ig_user_id, ig_token=dead.token,
                      login="instagram", created_at=old)  # fmt: skip
        session.add_all([good, bad])
        session.commit()
    ctx: Context = {}
    await make_startup(threads_settings(engine, redis_url, sim))(ctx)
    try:
        with caplog.at_level(logging.WARNING):
            first = await refresh_tokens(ctx)
            second = await refresh_tokens(ctx)
    finally:
        await shutdown(ctx)
    checks = {"checked": 0, "check_refused": 0, "check_later": 0}  # no Facebook Login here
    assert first == {"refreshed": 2, "failed": 1, "later": 0} | checks
    assert second == {"refreshed": 0, "failed": 0, "later": 0} | checks  # nothing due any more
    renewed = account_of(engine, good.id)
    for expires_at, refreshed_at in (
        (renewed.ig_token_expires_at, renewed.ig_token_refreshed_at),
        (renewed.threads_token_expires_at, renewed.threads_token_refreshed_at),
    ):
        assert expires_at is not None
        assert expires_at > utcnow() + timedelta(days=59)
        assert refreshed_at is not None
    assert len(sim.world.log.calls(kind="refresh")) == 3  # two renewed, one refused; then none
    flagged = account_of(engine, bad.id)
    assert flagged.state == "reauth_required"
    assert caplog.text.count("could not be refreshed") == 1
    assert dead.token not in caplog.text
