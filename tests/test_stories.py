"""Story capture end to end: the real arq worker, real Redis, the simulator over HTTP.

Time is compressed the simulator's way: stories are posted in the past, so one expiring in
ten seconds is 23 h 59 min 50 s old, and the service keeps the real clock.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from core.config import Settings
from metasim import World
from models.accounts import Account
from models.snapshots import Media, Snapshot
from models.types import utcnow
from tests.conftest import make_settings
from tests.metasim_fixtures import RunningSim
from tests.test_deliveries import add_delivery, run_burst
from tests.workers_harness import eventually, running_workers
from workers.meta.metric_sets import NEVER_REQUEST

DAY = 24 * 3600


def story_settings(database_url: str, redis_url: str, sim: RunningSim, **kw: Any) -> Settings:
    """Short intervals: list every second, snapshot every 3 s, final 4 s before expiry."""
    base: dict[str, Any] = {
        "story_poll_seconds": 1,
        "story_snapshot_seconds": 3,
        "story_final_margin_seconds": 4,
        "schedule_tick_seconds": 1,
        "meta_minute_seconds": 1.0,
    }
    return make_settings(database_url, redis_url, **(base | sim.settings_overrides() | kw))


def register(engine: Engine, world: World, *, name: str = "shop", **account: Any) -> str:
    """An account in the simulator and the same one in the archiver; its IG user id."""
    sim_account = world.add_account(**account)
    with Session(engine) as session:
        session.add(
            Account(
                name=name,
                ig_user_id=sim_account.ig_user_id,
                ig_token=sim_account.token,
                login=sim_account.login,
            )
        )
        session.commit()
    return sim_account.ig_user_id


def stories(engine: Engine) -> dict[str, Media]:
    with Session(engine) as session:
        return {m.media_id: m for m in session.exec(select(Media))}


def story_snapshots(engine: Engine, media_id: str) -> list[Snapshot]:
    with Session(engine) as session:
        stmt = (
            select(Snapshot)
            .where(col(Snapshot.subject_id) == media_id)
            .order_by(col(Snapshot.version))
        )
        return list(session.exec(stmt))


def account_row(engine: Engine, ig_user_id: str) -> Account:
    with Session(engine) as session:
        account = session.exec(select(Account).where(col(Account.ig_user_id) == ig_user_id)).one()
        return account


def closed(engine: Engine, count: int) -> bool:
    rows = stories(engine).values()
    return len(rows) == count and all(m.capture_state != "live" for m in rows)


@pytest.mark.anyio
async def test_discovery_lists_every_page_and_stores_live_stories(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """All pages of /stories are read; each live story is stored with its 24-hour expiry."""
    sim.world.configure(page_size=2)
    ig = register(engine, sim.world)
    posted = [sim.world.add_story(ig, age_seconds=3600 * (i + 1)) for i in range(5)]
    sim.world.add_story(ig, age_seconds=DAY + 60)  # expired: never listed
    settings = story_settings(engine.url.render_as_string(False), redis_url, sim)
    async with running_workers(settings):
        await eventually(lambda: account_row(engine, ig).stories_polled_at is not None)
        found = stories(engine)
    assert set(found) == {story.id for story in posted}
    for story in posted:
        media = found[story.id]
        assert media.posted_at == story.timestamp.replace(microsecond=0)
        assert media.expires_at == media.posted_at + timedelta(hours=24)
    pages = [c for c in sim.world.log.calls(kind="stories") if c.params.get("after")]
    assert pages  # the cursor was followed past the first page


@pytest.mark.anyio
async def test_a_story_is_captured_at_intervals_and_finally_before_expiry(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """first, regular and final slots; versions 1..n; final before expiry; 3 clean calls each."""
    ig = register(engine, sim.world)
    story = sim.world.add_story(ig, age_seconds=DAY - 11)  # expires in 11 s
    settings = story_settings(engine.url.render_as_string(False), redis_url, sim)
    async with running_workers(settings):
        await eventually(lambda: closed(engine, 1))
    media = stories(engine)[story.id]
    snaps = story_snapshots(engine, story.id)
    assert media.capture_state == "final_captured"
    assert [s.version for s in snaps] == list(range(1, len(snaps) + 1))
    assert snaps[0].slot == "first"
    assert snaps[-1].slot == "final"
    assert snaps[-1].id == media.final_snapshot_id
    assert len(snaps) >= 3  # first, at least one regular slot, final
    assert media.expires_at is not None
    assert snaps[-1].captured_at < media.expires_at
    insights = sim.world.log.calls(kind="insights")
    assert len(insights) == 3 * len(snaps)  # no wasted call
    for call in insights:
        metrics = call.params["metric"].split(",")
        assert not set(metrics) & NEVER_REQUEST
        assert "breakdown" not in call.params or len(metrics) == 1


@pytest.mark.anyio
async def test_breakdown_rows_and_growing_counters_reach_metric_history(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """navigation has a row per action type; reach never shrinks from version to version."""
    ig = register(engine, sim.world)
    story = sim.world.add_story(ig, age_seconds=DAY - 11, viewers=900)
    settings = story_settings(engine.url.render_as_string(False), redis_url, sim)
    async with running_workers(settings):
        await eventually(lambda: closed(engine, 1))
    with engine.connect() as conn:
        nav = conn.execute(
            sa.text(
                "SELECT DISTINCT dimension FROM metric_history WHERE subject_id = :m"
                " AND metric = 'navigation' AND breakdown = 'story_navigation_action_type'"
            ),
            {"m": story.id},
        ).scalars()
        reach = conn.execute(
            sa.text(
                "SELECT value FROM metric_history WHERE subject_id = :m AND metric = 'reach'"
                " AND breakdown IS NULL ORDER BY version"
            ),
            {"m": story.id},
        ).scalars()
        assert {"tap_forward", "tap_back", "tap_exit", "swipe_forward"} <= set(nav)
        values = [float(v) for v in reach]
    assert values == sorted(values)
    assert values[-1] > 0


@pytest.mark.anyio
async def test_a_story_found_near_expiry_is_captured_at_once_as_final(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """Two minutes left and a 10-minute margin: the discovery capture is the final one."""
    ig = register(engine, sim.world)
    story = sim.world.add_story(ig, age_seconds=DAY - 120)
    settings = story_settings(
        engine.url.render_as_string(False), redis_url, sim, story_final_margin_seconds=600
    )
    async with running_workers(settings):
        await eventually(lambda: closed(engine, 1), timeout=10)
    snaps = story_snapshots(engine, story.id)
    assert [s.slot for s in snaps] == ["final"]
    assert stories(engine)[story.id].capture_state == "final_captured"


@pytest.mark.anyio
async def test_not_enough_viewers_is_a_below_threshold_snapshot(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """Error 10 still makes a version: every value null, flagged below_threshold."""
    ig = register(engine, sim.world)
    story = sim.world.add_story(ig, age_seconds=DAY - 60, viewers=3)
    settings = story_settings(
        engine.url.render_as_string(False), redis_url, sim, story_final_margin_seconds=600
    )
    async with running_workers(settings):
        await eventually(lambda: closed(engine, 1), timeout=10)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT value, flag FROM metric_history WHERE subject_id = :m"),
            {"m": story.id},
        ).all()
    assert len(rows) == 11  # the 9 plain metrics, navigation and profile_activity
    assert {(value, flag) for value, flag in rows} == {(None, "below_threshold")}


@pytest.mark.anyio
async def test_expired_token_flags_the_account_and_stops_calling(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """190 flags the account for re-authorisation once (from the listing, or from the token
    check at worker start, whichever asks Meta first); no more listings are attempted."""
    ig = register(engine, sim.world)
    sim.world.tokens.expire_token(account_row(engine, ig).ig_token)
    settings = story_settings(engine.url.render_as_string(False), redis_url, sim)
    async with running_workers(settings):
        await eventually(lambda: account_row(engine, ig).state == "reauth_required")
        calls = len(sim.world.log.calls(kind="stories"))
        await asyncio.sleep(2.5)  # two more ticks and poll intervals: nothing must be called
    assert len(sim.world.log.calls(kind="stories")) == calls <= 1
    assert "190" in (account_row(engine, ig).state_reason or "")


@pytest.mark.anyio
async def test_two_workers_never_capture_a_slot_twice(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """Many stories, two workers: each (story, slot) is one snapshot, each costs 3 calls."""
    for n in range(3):
        ig = register(engine, sim.world, name=f"shop{n}")
        for k in range(4):
            sim.world.add_story(ig, age_seconds=DAY - 8 - k)
    settings = story_settings(engine.url.render_as_string(False), redis_url, sim)
    async with running_workers(settings, count=2):
        await eventually(lambda: closed(engine, 12), timeout=30)
    with engine.connect() as conn:
        dup = conn.execute(
            sa.text(
                "SELECT subject_id, slot, COUNT(*) FROM snapshot GROUP BY subject_id, slot"
                " HAVING COUNT(*) > 1"
            )
        ).all()
        total = conn.execute(sa.text("SELECT COUNT(*) FROM snapshot")).scalar_one()
    assert dup == []
    assert len(sim.world.log.calls(kind="insights")) == 3 * total
    assert {m.capture_state for m in stories(engine).values()} == {"final_captured"}


@pytest.mark.anyio
async def test_throttling_pauses_captures_then_they_resume(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """80002 pauses the account in Redis; no call is made while paused; the final still lands."""
    ig = register(engine, sim.world)
    story = sim.world.add_story(ig, age_seconds=DAY - 14)
    sim.world.faults.add(code=80002, status=400, account=ig, kind="insights", regain_minutes=2)
    settings = story_settings(engine.url.render_as_string(False), redis_url, sim)
    async with running_workers(settings, count=2):
        await eventually(lambda: closed(engine, 1), timeout=30)
    calls = sim.world.log.calls(kind="insights", account=ig)
    throttled = next(c for c in calls if c.code == 80002)
    after = [c for c in calls if c.seq > throttled.seq]
    assert after
    assert (after[0].at - throttled.at).total_seconds() >= 2.0  # 2 "minutes" of 1 s
    assert stories(engine)[story.id].capture_state == "final_captured"


@pytest.mark.anyio
async def test_the_webhook_version_joins_the_same_story(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """story_insights arriving after expiry becomes the next version of the captured story."""
    ig = register(engine, sim.world)
    story = sim.world.add_story(ig, age_seconds=DAY - 120)
    settings = story_settings(
        engine.url.render_as_string(False), redis_url, sim, story_final_margin_seconds=600
    )
    async with running_workers(settings):
        await eventually(lambda: closed(engine, 1), timeout=10)
    change = {"field": "story_insights", "value": sim.world.story_webhook_value(story.id)}
    entry = {"id": ig, "time": int(utcnow().timestamp()), "changes": [change]}
    delivery = add_delivery(engine, json.dumps({"object": "instagram", "entry": [entry]}).encode())
    await asyncio.to_thread(run_burst, settings, [delivery])
    snaps = story_snapshots(engine, story.id)
    assert [(s.version, s.source, s.slot) for s in snaps] == [
        (1, "api", "final"),
        (2, "webhook", "webhook"),
    ]
