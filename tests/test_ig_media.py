"""Feed posts and Reels end to end: the real arq worker, real Redis, the simulator over HTTP.
Discovery through /media, captures on the decaying schedule, the narrow drop of a metric one
carousel refuses, listing failures backing off and recovering, and the views."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from archiver.status.as_text import instagram_fields
from core.config import Settings
from metasim import World
from models.accounts import Account
from models.snapshots import Media, Snapshot
from models.types import utcnow
from reports.coverage import account_statuses
from store.due_captures import insert_media
from tests.conftest import make_settings
from tests.metasim_fixtures import RunningSim
from tests.workers_harness import eventually, running_workers

DAY = 86400.0
README_REELS = """
SELECT r.media_id, r.posted_at, r.value AS reach, w.value / 1000.0 AS avg_watch_s
FROM media_latest r
JOIN media_latest w ON w.media_id = r.media_id AND w.metric = 'ig_reels_avg_watch_time'
WHERE r.account_id = :a AND r.subject_type = 'reel' AND r.metric = 'reach'
  AND r.breakdown IS NULL
ORDER BY r.value DESC
"""


def media_settings(engine: Engine, redis_url: str, sim: RunningSim, **kw: Any) -> Settings:
    """List /media every 2 s; media snapshots 2 s and 4 s after posting, nothing monthly."""
    base: dict[str, Any] = {
        "ig_media_poll_seconds": 2,
        "story_poll_seconds": 3600,
        "threads_poll_seconds": 3600,
        "schedule_tick_seconds": 1,
        "meta_minute_seconds": 1.0,
        "ig_media_snapshots": "2s,4s",
        "ig_media_max_age": "4s",
    }
    url = engine.url.render_as_string(hide_password=False)
    return make_settings(url, redis_url, **(base | sim.settings_overrides() | kw))


def register(engine: Engine, world: World) -> Account:
    ig = world.add_account()
    account = Account(name=f"shop{ig.ig_user_id[-4:]}", ig_user_id=ig.ig_user_id, ig_token=ig.token)
    with Session(engine, expire_on_commit=False) as session:
        session.add(account)
        session.commit()
    return account


def media_rows(engine: Engine) -> dict[str, Media]:
    with Session(engine) as session:
        stmt = select(Media).where(col(Media.subject_type).in_(("feed", "reel")))
        return {m.media_id: m for m in session.exec(stmt)}


def slots(engine: Engine, media_id: str) -> list[str]:
    with Session(engine) as session:
        stmt = select(Snapshot.slot).where(col(Snapshot.subject_id) == media_id)
        return list(session.exec(stmt.order_by(col(Snapshot.version))))


def view(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.text(sql), params)]


def account_of(engine: Engine, account_id: int | None) -> Account:
    with Session(engine) as session:
        found = session.get(Account, account_id)
        assert found is not None
        return found


@pytest.mark.anyio
async def test_media_are_discovered_and_captured_on_their_schedule(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """first, 2s and 4s after posting, then done; FEED and REELS sets, breakdown in its own
    call; a carousel's refused `views` is dropped for that media only; media older than the
    first listing's reach wait for a backfill."""
    account = register(engine, sim.world)
    feed = sim.world.feed
    post = feed.add_media(account.ig_user_id)
    reel = feed.add_media(account.ig_user_id, media_product_type="REELS")
    album = feed.add_media(account.ig_user_id, media_type="CAROUSEL_ALBUM", refuses=["views"])
    old = feed.add_media(account.ig_user_id, age_seconds=40 * DAY)
    ids = (post.id, reel.id, album.id)

    def finished() -> bool:
        rows = media_rows(engine)
        return all(rows.get(i) is not None and rows[i].capture_state == "done" for i in ids)

    async with running_workers(media_settings(engine, redis_url, sim)):
        await eventually(finished, timeout=20)
    rows = media_rows(engine)
    assert old.id not in rows
    assert (rows[post.id].subject_type, rows[reel.id].subject_type) == ("feed", "reel")
    for media_id in ids:
        assert slots(engine, media_id) == ["first", "2s", "4s"]
    asked = sim.world.log.calls(kind="ig_media_insights")
    post_calls = [c.params for c in asked if c.object_id == post.id]
    assert len(post_calls) == 6  # plain + profile_activity by action_type, three times
    assert {c.get("breakdown") for c in post_calls} == {None, "action_type"}
    assert len([c for c in asked if c.object_id == reel.id]) == 3
    album_views = [c for c in asked if c.object_id == album.id and "views" in c.params["metric"]]
    assert len(album_views) == 1  # refused once, never asked again
    history = view(
        engine,
        "SELECT subject_type, metric, value, flag FROM metric_history WHERE subject_id = :m "
        "AND version = 3",
        m=album.id,
    )
    views = [r for r in history if r["metric"] == "views"]
    assert views == [
        {"subject_type": "feed", "metric": "views", "value": None, "flag": "not_supported"}
    ]
    reel_latest = view(
        engine, "SELECT * FROM media_latest WHERE media_id = :m AND breakdown IS NULL", m=reel.id
    )
    assert {r["metric"] for r in reel_latest} >= {"ig_reels_avg_watch_time", "reach", "likes"}
    assert {r["version"] for r in reel_latest} == {3}
    assert {r["media_product_type"] for r in reel_latest} == {"REELS"}
    readme = view(engine, README_REELS, a=rows[reel.id].account_id)  # the README's example
    assert [(r["media_id"], r["reach"]) for r in readme] == [
        (reel.id, next(r["value"] for r in reel_latest if r["metric"] == "reach"))
    ]


@pytest.mark.anyio
async def test_a_listing_refused_backs_off_visibly_and_recovers(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """A permission error on /media: media_problem (and `archiver status`) says why and the
    listing waits; once
    granted again, the next listing finds the media and clears the problem."""
    account = register(engine, sim.world)
    post = sim.world.feed.add_media(account.ig_user_id)
    sim.world.budgets.deny(account.ig_user_id, kind="ig_media_list")
    async with running_workers(media_settings(engine, redis_url, sim)):
        await eventually(lambda: account_of(engine, account.id).media_problem is not None)
        problem = account_of(engine, account.id).media_problem or ""
        assert "permission denied" in problem
        assert account_of(engine, account.id).media_failures >= 1
        (status,) = account_statuses(engine, now=utcnow(), grace=timedelta(seconds=5))
        shown = dict(instagram_fields(status, utcnow()))
        assert "permission denied" in shown["feed/Reels listing"]  # archiver status
        assert post.id not in media_rows(engine)
        sim.world.budgets.allow(account.ig_user_id)
        with Session(engine) as session:  # the operator fixed it: list again now
            found = session.get(Account, account.id)
            assert found is not None
            found.next_media_listing_at = utcnow()
            session.add(found)
            session.commit()
        await eventually(lambda: post.id in media_rows(engine))
        await eventually(lambda: account_of(engine, account.id).media_problem is None)
    assert account_of(engine, account.id).media_failures == 0


@pytest.mark.anyio
async def test_a_throttled_capture_waits_for_the_pause_and_a_lost_media_is_closed(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """Code 80002 on an insights call: retried after Meta's pause, the slot still taken;
    a media Meta no longer finds (#100 object missing) is closed, not retried forever."""
    account = register(engine, sim.world)
    post = sim.world.feed.add_media(account.ig_user_id)
    gone = sim.world.feed.add_media(account.ig_user_id)
    sim.world.faults.add(code=80002, account=account.ig_user_id, kind="ig_media_insights")
    with sim.world.lock:  # the owner deletes it after it was listed: the id answers (#100)
        listed = sim.world.state.ig_media_index

    def forget_gone() -> bool:
        if gone.id in media_rows(engine):
            listed.pop(gone.id, None)
            return True
        return False

    async with running_workers(media_settings(engine, redis_url, sim, ig_media_snapshots="60s")):
        await eventually(forget_gone)
        await eventually(lambda: slots(engine, post.id) == ["first"])
        await eventually(lambda: media_rows(engine)[gone.id].capture_state == "done")
    assert "gone" in (media_rows(engine)[gone.id].missed_reason or "")
    throttled = [c for c in sim.world.log.calls(kind="ig_media_insights") if c.code == 80002]
    assert len(throttled) == 1


def test_insert_media_tells_a_known_media_apart(engine: Engine) -> None:
    """The second insert of a media id reports False on both backends (PostgreSQL's RETURNING
    made rowcount -1, so every listing once counted every media as new)."""
    account = Account(name="shop", ig_user_id="1784", ig_token="t")
    with Session(engine) as session:
        session.add(account)
        session.commit()
        session.refresh(account)
        assert account.id is not None
        found = [
            insert_media(
                session,
                Media(
                    account_id=account.id, platform="instagram", subject_type="feed", media_id="m"
                ),
            )
            for _ in range(2)
        ]
        session.commit()
    assert found == [True, False]
