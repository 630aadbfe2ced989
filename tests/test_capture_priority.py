"""Finals first: a due final overtakes waiting captures in arq's queue, and the tick promotes
the final of a story whose earlier slot is stuck in a backlog."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from arq.connections import RedisSettings, create_pool
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from jobqueue.names import IG_MEDIA, capture_job_id
from models.accounts import Account
from models.snapshots import Media
from models.types import utcnow
from store.due_captures import LIVE, MISSED, TRACKED, due_captures, promote_finals
from workers.captures.jobs import enqueue_capture
from workers.captures.slots import FINAL

MARGIN = timedelta(seconds=30)


@pytest.mark.anyio
async def test_a_due_final_is_scored_ahead_of_every_waiting_capture(redis_url: str) -> None:
    """A regular slot ten minutes late still runs after a final that just came due."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        now = utcnow()
        await enqueue_capture(pool, "instagram", "1", "s3", now - timedelta(minutes=10))
        assert await enqueue_capture(pool, "instagram", "2", FINAL, now)
        queue = [job.decode() for job in await pool.zrange("arq:queue", 0, -1)]
        assert queue == [capture_job_id("instagram", "2", FINAL), "story:1:s3"]
    finally:
        await pool.aclose()


@pytest.mark.anyio
async def test_a_final_not_yet_due_is_left_to_the_tick(redis_url: str) -> None:
    """Enqueued early it would run at once (its score is in the past): not enqueued at all."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        later = utcnow() + timedelta(minutes=5)
        assert not await enqueue_capture(pool, "instagram", "3", FINAL, later)
        assert await pool.zcard("arq:queue") == 0
        assert await enqueue_capture(pool, "threads", "4", "1h", later)  # posts: no headstart
    finally:
        await pool.aclose()


def add_story(
    session: Session, account_id: int, media_id: str, expires_at: datetime, **kw: object
) -> None:
    values: dict[str, object] = {"capture_state": LIVE, "next_slot": "s7"} | kw
    session.add(
        Media(
            account_id=account_id,
            platform="instagram",
            subject_type="story",
            media_id=media_id,
            posted_at=expires_at - timedelta(hours=24),
            expires_at=expires_at,
            next_capture_at=utcnow() - timedelta(seconds=40),
            **values,  # type: ignore[arg-type]
        )
    )


def test_the_tick_promotes_a_due_final_past_a_stuck_slot(engine: Engine) -> None:
    """Only live stories inside the margin, not yet at final, become final at expiry - margin."""
    now = utcnow()
    with Session(engine) as session:
        account = Account(name="shop", ig_user_id="1784", ig_token="EAAtoken")
        session.add(account)
        session.flush()
        assert account.id is not None
        add_story(session, account.id, "stuck", now + timedelta(seconds=20))
        add_story(session, account.id, "early", now + timedelta(minutes=5))
        add_story(session, account.id, "expired", now - timedelta(seconds=1))
        add_story(session, account.id, "closed", now + timedelta(seconds=20), capture_state=MISSED)
        add_story(session, account.id, "at_final", now + timedelta(seconds=25), next_slot=FINAL)
        session.commit()
    promoted = promote_finals(engine, slot=FINAL, now=now, margin=MARGIN, limit=100)
    assert [(p.media_id, p.slot) for p in promoted] == [("stuck", FINAL)]
    assert promoted[0].due == now + timedelta(seconds=20) - MARGIN
    with Session(engine) as session:
        slots = {m.media_id: m.next_slot for m in session.exec(select(Media))}
    assert slots == {
        "stuck": FINAL,
        "early": "s7",
        "expired": "s7",
        "closed": "s7",
        "at_final": FINAL,
    }
    assert promote_finals(engine, slot=FINAL, now=now, margin=MARGIN, limit=100) == []


@pytest.mark.anyio
async def test_a_story_final_overtakes_waiting_feed_and_reel_captures(redis_url: str) -> None:
    """A story's last chance beats a post's next point: feed/Reel captures overdue by ten
    minutes still run after a final that just came due; they get ids of their own."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        now = utcnow()
        await enqueue_capture(pool, IG_MEDIA, "5", "1h", now - timedelta(minutes=10))
        await enqueue_capture(pool, IG_MEDIA, "6", "first", now - timedelta(minutes=1))
        assert await enqueue_capture(pool, "instagram", "7", FINAL, now)
        queue = [job.decode() for job in await pool.zrange("arq:queue", 0, -1)]
        assert queue == [
            capture_job_id("instagram", "7", FINAL),
            "ig_media:5:1h",
            "ig_media:6:first",
        ]
    finally:
        await pool.aclose()


def test_a_backlog_of_media_never_pushes_a_due_final_out_of_the_tick(engine: Engine) -> None:
    """30 feed captures due for an hour, 12 stories' first captures waiting, batches of 10
    and 5: the story's final is still read, first; the feed captures after the stories, as
    `ig_media` jobs."""
    now = utcnow()
    with Session(engine) as session:
        account = Account(name="shop", ig_user_id="1784", ig_token="EAAtoken")
        session.add(account)
        session.flush()
        assert account.id is not None
        for n in range(30):
            session.add(
                Media(
                    account_id=account.id, platform="instagram", subject_type="feed",
                    media_id=f"f{n}", capture_state=TRACKED, next_slot="first",
                    next_capture_at=now - timedelta(hours=1, seconds=n),
                )
            )  # fmt: skip
        for n in range(12):  # stories whose first capture has waited longer than the final
            add_story(session, account.id, f"s{n}", now + timedelta(hours=3), next_slot="first")
        add_story(session, account.id, "story", now + MARGIN, next_slot=FINAL)
        session.commit()
    due = due_captures(engine, until=now, limit=10, tracked_limit=5)
    assert (due[0].media_id, due[0].slot, due[0].job) == ("story", FINAL, "instagram")
    assert {d.media_id[0] for d in due[1:10]} == {"s"}
    assert [(d.media_id, d.job) for d in due[10:12]] == [("f29", IG_MEDIA), ("f28", IG_MEDIA)]
    assert len(due) == 15
