"""Story capture jobs: the scheduler tick, each account's listing, and each slot's capture.

- `schedule_stories` (cron, every SCHEDULE_TICK_SECONDS; one worker of many runs each tick):
  enqueues the listings and captures the database says are due, under deterministic job ids,
  and closes stories that expired without a final capture.
- `poll_stories(account_id)`: lists the account's live stories (all pages); a new story gets
  its first capture at once.
- `capture_story(media_id, slot)`: one snapshot (3 insights calls, workers.metric_sets), then
  the next slot is scheduled (workers.schedule) and enqueued with its due time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from arq import Retry
from arq.connections import ArqRedis
from sqlalchemy.engine import Engine

from models.config import Settings
from models.db import session_scope
from models.jobs import CAPTURE_STORY, POLL_STORIES, story_job_id, story_poll_job_id
from models.recording import Subject, record_snapshot
from models.stories import (
    ACTIVE,
    FINAL_CAPTURED,
    LIVE,
    MISSED,
    STORY_LIFETIME,
    CaptureTarget,
    FoundStory,
    account_credentials,
    add_stories,
    capture_target,
    close_story,
    due_captures,
    due_polls,
    flag_reauth,
    mark_expired,
    note_story_error,
    record_poll,
    schedule_capture,
)
from models.types import utcnow
from workers.errors import AuthError, MetaError, ObjectNotFound, Throttled, Transient
from workers.graph import IgAccount, IgMedia, StoryInsights
from workers.schedule import FINAL, StorySchedule

log = logging.getLogger(__name__)

CAPTURE_MAX_TRIES = 8  # throttle pauses and transient failures; the last try moves on
TICK_BATCH = 2000  # rows per tick and kind; the rest are due at the next tick
EXPIRY_GRACE = timedelta(seconds=60)  # a final capture in flight at expiry may still land
POLL_RETRY_SECONDS = 60  # a listing that failed transiently is tried again this soon


def story_schedule(settings: Settings) -> StorySchedule:
    return StorySchedule(settings.story_snapshot_seconds, settings.story_final_margin_seconds)


async def schedule_stories(ctx: dict[str, Any]) -> dict[str, int]:
    """The tick: enqueue what is due (a duplicate id is a no-op), close expired stories."""
    settings: Settings = ctx["settings"]
    engine: Engine = ctx["engine"]
    redis: ArqRedis = ctx["redis"]
    now = utcnow()
    polls = await asyncio.to_thread(due_polls, engine, now=now, limit=TICK_BATCH)
    for account_id, due in polls:
        job_id = story_poll_job_id(account_id, int(due.timestamp()))
        await redis.enqueue_job(POLL_STORIES, account_id, _job_id=job_id)
    lookahead = now + timedelta(seconds=2 * settings.schedule_tick_seconds)
    captures = await asyncio.to_thread(due_captures, engine, until=lookahead, limit=TICK_BATCH)
    for media_id, slot, due in captures:
        await _enqueue_capture(redis, media_id, slot, due)
    missed = await asyncio.to_thread(mark_expired, engine, now=now, grace=EXPIRY_GRACE)
    if missed:
        log.warning("%d stories expired without a final snapshot", missed)
    return {"polls": len(polls), "captures": len(captures), "missed": missed}


async def _enqueue_capture(
    redis: ArqRedis, media_id: str, slot: str, due: datetime | None = None
) -> None:
    await redis.enqueue_job(
        CAPTURE_STORY, media_id, slot, _job_id=story_job_id(media_id, slot), _defer_until=due
    )


async def poll_stories(ctx: dict[str, Any], account_id: int) -> str:
    """List the account's live stories; start capturing the new ones at once."""
    settings: Settings = ctx["settings"]
    engine: Engine = ctx["engine"]
    started = time.monotonic()
    account = await asyncio.to_thread(account_credentials, engine, account_id)
    if account is None or account.state != ACTIVE:
        return "skipped: account removed or not active"
    creds = IgAccount(account.ig_user_id, account.ig_token, account.login)
    poll_every = timedelta(seconds=settings.story_poll_seconds)
    try:
        listed = await ctx["graph"].list_stories(creds)
    except MetaError as exc:
        return await _poll_failed(engine, account_id, exc, poll_every)
    now = utcnow()
    fresh = await asyncio.to_thread(
        _store_listing, engine, account_id, listed, now, story_schedule(settings)
    )
    for media_id, slot in fresh:
        await _enqueue_capture(ctx["redis"], media_id, slot)
    await asyncio.to_thread(
        record_poll, engine, account_id=account_id, next_at=now + poll_every, polled=True
    )
    outcome = f"{len(listed)} live, {len(fresh)} new"
    _log_job("stories of account %s: %s", account_id, outcome, started, ctx)
    return outcome


async def _poll_failed(
    engine: Engine, account_id: int, exc: MetaError, poll_every: timedelta
) -> str:
    """Throttled: wait out the pause; auth: flag once; otherwise try again soon."""
    now = utcnow()
    if isinstance(exc, Throttled):
        next_at = now + timedelta(seconds=max(exc.retry_after, 1.0))
    elif isinstance(exc, AuthError):
        if await asyncio.to_thread(flag_reauth, engine, account_id=account_id, reason=str(exc)):
            log.warning("account %s needs re-authorisation: %s", account_id, exc)
        next_at = now + poll_every
    else:
        next_at = now + min(poll_every, timedelta(seconds=POLL_RETRY_SECONDS))
    await asyncio.to_thread(
        record_poll, engine, account_id=account_id, next_at=next_at, polled=False, error=str(exc)
    )
    return f"listing failed: {type(exc).__name__}"


def _store_listing(
    engine: Engine,
    account_id: int,
    listed: list[IgMedia],
    now: datetime,
    schedule: StorySchedule,
) -> list[tuple[str, str]]:
    """Store new live stories and set their first slot; return (media id, slot) to enqueue."""
    found = [
        FoundStory(m.id, m.timestamp, m.media_type, m.media_product_type, m.permalink, m.caption)
        for m in listed
        if m.timestamp is not None
    ]
    found = [story for story in found if story.posted_at + STORY_LIFETIME > now]
    with session_scope(engine) as session:
        fresh = add_stories(session, account_id=account_id, stories=found, now=now)
        slots = []
        for story in fresh:
            slot = schedule.on_discovery(story.posted_at, story.posted_at + STORY_LIFETIME, now)
            schedule_capture(session, media_id=story.media_id, slot=slot, due=now)
            slots.append((story.media_id, slot))
    return slots


async def capture_story(ctx: dict[str, Any], media_id: str, slot: str) -> str:
    """Take one slot's snapshot unless it is stale, then schedule the next slot."""
    engine: Engine = ctx["engine"]
    started = time.monotonic()
    target = await asyncio.to_thread(capture_target, engine, media_id)
    if target is None or target.capture_state != LIVE or target.next_slot != slot:
        return "skipped: not due (captured already, closed or unknown)"
    now = utcnow()
    if now >= target.expires_at:
        reason = f"the {slot} capture ran after expiry"
        await asyncio.to_thread(_close, engine, media_id, MISSED, None, reason)
        return "missed: expired"
    schedule = story_schedule(ctx["settings"])
    taken = FINAL if now >= schedule.final_due(target.expires_at) else slot
    if target.account_state != ACTIVE:
        return await _skip_slot(ctx, target, slot, "account needs re-authorisation")
    try:
        insights = await ctx["graph"].story_insights(
            IgAccount(target.ig_user_id, target.ig_token, target.login), media_id
        )
    except MetaError as exc:
        return await _capture_failed(ctx, target, slot, exc)
    outcome = await asyncio.to_thread(_record, engine, target, slot, taken, insights, schedule)
    if outcome.next is not None:
        await _enqueue_capture(ctx["redis"], media_id, *outcome.next)
    _log_job("story %s: %s", media_id, outcome.summary, started, ctx)
    return outcome.summary


class _Recorded:
    def __init__(self, summary: str, next_slot: tuple[str, datetime] | None) -> None:
        self.summary = summary
        self.next = next_slot


def _record(
    engine: Engine,
    target: CaptureTarget,
    slot: str,
    taken: str,
    insights: StoryInsights,
    schedule: StorySchedule,
) -> _Recorded:
    """The snapshot, and in the same transaction the story's next slot or its closing."""
    raw = {"insights": insights.raw, "dropped": list(insights.dropped), "slot": slot}
    subject = Subject(target.account_id, "instagram", "story", target.media_id)
    with session_scope(engine) as session:
        snapshot, created = record_snapshot(
            session=session,
            subject=subject,
            slot=taken,
            source="api",
            metrics=insights.rows,
            raw=raw,
            api_version=insights.api_version,
        )
        now = snapshot.captured_at
        following = None
        if taken == FINAL and now < target.expires_at:
            close_story(
                session,
                media_id=target.media_id,
                state=FINAL_CAPTURED,
                final_snapshot_id=snapshot.id,
            )
        elif taken == FINAL:
            close_story(
                session,
                media_id=target.media_id,
                state=MISSED,
                reason="the final capture completed after expiry",
            )
        else:
            following = schedule.after(taken, target.posted_at, target.expires_at, now)
            slot_name, due = following or (None, None)
            schedule_capture(session, media_id=target.media_id, slot=slot_name, due=due)
    verb = "captured" if created else "already captured"
    return _Recorded(f"{verb} {taken} as version {snapshot.version}", following)


async def _capture_failed(
    ctx: dict[str, Any], target: CaptureTarget, slot: str, exc: MetaError
) -> str:
    """Throttled or transient: retry (bounded). Auth: flag the account. Gone: close."""
    engine: Engine = ctx["engine"]
    await asyncio.to_thread(note_story_error, engine, media_id=target.media_id, error=str(exc))
    job_try = int(ctx.get("job_try") or 1)
    retryable = isinstance(exc, Throttled | Transient)
    if retryable and job_try < CAPTURE_MAX_TRIES:
        delay = exc.retry_after if isinstance(exc, Throttled) else min(60, 2**job_try)
        raise Retry(defer=max(delay, 0.5))
    if isinstance(exc, ObjectNotFound):
        reason = f"the story is gone (deleted or expired early): {exc}"
        await asyncio.to_thread(_close, engine, target.media_id, MISSED, None, reason)
        return "missed: story not found"
    if isinstance(exc, AuthError) and await asyncio.to_thread(
        flag_reauth, engine, account_id=target.account_id, reason=str(exc)
    ):
        log.warning("account %s needs re-authorisation: %s", target.account_id, exc)
    return await _skip_slot(ctx, target, slot, f"{type(exc).__name__}: {exc}")


async def _skip_slot(ctx: dict[str, Any], target: CaptureTarget, slot: str, why: str) -> str:
    """Give up on this slot but keep the story's schedule going (the final may still work)."""
    engine: Engine = ctx["engine"]
    schedule = story_schedule(ctx["settings"])
    following = schedule.after(slot, target.posted_at, target.expires_at, utcnow())

    def advance() -> None:
        note_story_error(engine, media_id=target.media_id, error=why)
        with session_scope(engine) as session:
            slot_name, due = following or (None, None)
            schedule_capture(session, media_id=target.media_id, slot=slot_name, due=due)
            if following is None:
                close_story(session, media_id=target.media_id, state=MISSED, reason=why)

    await asyncio.to_thread(advance)
    if following is not None:
        await _enqueue_capture(ctx["redis"], target.media_id, *following)
    log.warning("story %s: %s slot skipped: %s", target.media_id, slot, why)
    return f"skipped {slot}: {why}"


def _close(
    engine: Engine, media_id: str, state: str, snapshot_id: int | None, reason: str | None
) -> None:
    with session_scope(engine) as session:
        close_story(
            session, media_id=media_id, state=state, final_snapshot_id=snapshot_id, reason=reason
        )


def _log_job(
    message: str, subject: object, outcome: str, started: float, ctx: dict[str, Any]
) -> None:
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    extra = {"job_id": ctx.get("job_id"), "job_try": ctx.get("job_try"), "duration_ms": duration_ms}
    log.info(
        message + " in %.1f ms (try %s)",
        subject,
        outcome,
        duration_ms,
        extra["job_try"],
        extra=extra,
    )
