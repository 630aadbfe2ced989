"""The scheduler tick (cron, every SCHEDULE_TICK_SECONDS; arq's unique cron makes one worker of
many run each tick): enqueue every listing (stories; feed posts and Reels), poll and capture
the database says is due, and each account's daily insights run, under deterministic job ids
(a duplicate is a no-op), and close stories that expired uncaptured.

Jobs also enqueue their own follow-ups (the next slot) for precision; the tick is what makes
the schedule survive a Redis flush or a killed worker. Everything is enqueued at its due time,
so arq runs the oldest due work first, except a story's final, which the tick enqueues once due
and ahead of all else (workers.captures.jobs.FINAL_HEADSTART), even when an earlier slot of the
story is still waiting in the queue (store.due_captures.promote_finals).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from arq.connections import ArqRedis
from sqlalchemy.engine import Engine

from core.config import Settings
from jobqueue.names import (
    CAPTURE_ACCOUNT_INSIGHTS,
    LIST_IG_MEDIA,
    MAIN_QUEUE,
    POLL_STORIES,
    POLL_THREADS,
    account_insights_job_id,
    media_listing_job_id,
    story_poll_job_id,
    threads_poll_job_id,
)
from models.partitions import ensure_ahead
from models.types import utcnow
from store.account_insights import due_account_insights
from store.due_captures import due_captures, promote_finals
from store.ig_media import due_media_listings
from store.story_bookkeeping import due_polls, mark_expired
from store.threads_bookkeeping import due_threads_polls
from workers.captures.jobs import enqueue_capture
from workers.captures.slots import FINAL
from workers.runtime.context import Context, in_thread

log = logging.getLogger(__name__)

TICK_BATCH = 2000  # rows per tick and kind; the rest are due at the next tick
# Posts, feed posts and Reels, and /media listings, per tick: their jobs enqueue their own
# follow-ups, so the tick only backs them up (after a Redis flush, say); re-enqueueing a
# backlog of thousands every tick (each a Redis round trip) made ticks last 25 s and held
# back the story finals they enqueue.
TRACKED_BATCH = 200
EXPIRY_GRACE = timedelta(seconds=60)  # a final capture in flight at expiry may still land
TICK_STARTED_KEY = "archiver:schedule_due:started"


async def schedule_due(ctx: Context) -> dict[str, int]:
    """The tick: enqueue what is due, close expired stories; returns counts for the log."""
    engine: Engine = ctx["engine"]
    now = utcnow()
    if await _superseded(ctx["redis"], ctx.get("score"), now):
        return {"superseded": 1}
    # Captures first, stories' before the rest: a slow tick must not hold a final back.
    counts = await _captures(ctx, now)
    counts |= await _polls(ctx, now)
    counts["account_insights"] = await _account_insights(ctx, now)
    missed = await in_thread(ctx, mark_expired, engine, now=now, grace=EXPIRY_GRACE)
    if missed:
        log.warning("%d stories expired without a final snapshot", missed)
    counts["partitions"] = len(await in_thread(ctx, ensure_ahead, engine, now))
    return logged(counts | {"missed": missed})


async def _captures(ctx: Context, now: datetime) -> dict[str, int]:
    """Finals promoted ahead of all else, then every capture due up to the lookahead."""
    settings: Settings = ctx["settings"]
    engine: Engine = ctx["engine"]
    lookahead = now + timedelta(seconds=2 * settings.schedule_tick_seconds)
    margin = timedelta(seconds=settings.story_final_margin_seconds)
    finals = await in_thread(
        ctx, promote_finals, engine, slot=FINAL, now=now, margin=margin, limit=TICK_BATCH
    )
    captures = await in_thread(
        ctx,
        due_captures,
        engine,
        until=lookahead,
        limit=TICK_BATCH,
        tracked_limit=TRACKED_BATCH,
        final_slot=FINAL,
    )
    for capture in [*finals, *captures]:
        await enqueue_capture(
            ctx["redis"], capture.job, capture.media_id, capture.slot, capture.due
        )
    return {"captures": len(captures), "finals_promoted": len(finals)}


async def _polls(ctx: Context, now: datetime) -> dict[str, int]:
    """Story listings, Threads polls and /media listings that are due."""
    engine: Engine = ctx["engine"]
    redis: ArqRedis = ctx["redis"]
    polls = await in_thread(ctx, due_polls, engine, now=now, limit=TICK_BATCH)
    for account_id, due in polls:
        job_id = story_poll_job_id(account_id, int(due.timestamp()))
        await redis.enqueue_job(
            POLL_STORIES, account_id, _job_id=job_id, _defer_until=due, _queue_name=MAIN_QUEUE
        )
    threads = await in_thread(ctx, due_threads_polls, engine, now=now, limit=TICK_BATCH)
    for account_id, due in threads:
        epoch = int(due.timestamp())
        job_id = threads_poll_job_id(account_id, epoch)
        await redis.enqueue_job(
            POLL_THREADS, account_id, epoch, _job_id=job_id, _queue_name=MAIN_QUEUE
        )
    listings = await in_thread(ctx, due_media_listings, engine, now=now, limit=TRACKED_BATCH)
    for account_id, due in listings:
        epoch = int(due.timestamp())
        job_id = media_listing_job_id(account_id, epoch)
        await redis.enqueue_job(
            LIST_IG_MEDIA, account_id, epoch, _job_id=job_id, _queue_name=MAIN_QUEUE
        )
    return {
        "story_polls": len(polls),
        "threads_polls": len(threads),
        "media_listings": len(listings),
    }


async def _account_insights(ctx: Context, now: datetime) -> int:
    """Daily account insights runs (unless IG_ACCOUNT_INSIGHTS is off). They can wait: scored
    at the lookahead, behind every capture this tick enqueued (workers.captures.
    account_insights also yields to a story final due soon)."""
    settings: Settings = ctx["settings"]
    if not settings.ig_account_insights:
        return 0
    lookahead = now + timedelta(seconds=2 * settings.schedule_tick_seconds)
    engine: Engine = ctx["engine"]
    accounts = await in_thread(ctx, due_account_insights, engine, now=now, limit=TICK_BATCH)
    for account_id, due in accounts:
        epoch = int(due.timestamp())
        await ctx["redis"].enqueue_job(
            CAPTURE_ACCOUNT_INSIGHTS,
            account_id,
            epoch,
            _job_id=account_insights_job_id(account_id, epoch),
            _defer_until=max(due, lookahead),
            _queue_name=MAIN_QUEUE,  # the tick runs in the control lane's queue
        )
    return len(accounts)


def logged(counts: dict[str, int]) -> dict[str, int]:
    """One line per tick, at INFO only when it enqueued or closed something (an idle tick a
    second would bury everything else)."""
    level = logging.INFO if any(counts.values()) else logging.DEBUG
    log.log(level, "tick: %s", counts, extra=counts)
    return counts


async def _superseded(redis: ArqRedis, score: int | None, now: datetime) -> bool:
    """True for a tick that waited in a backed-up queue while a later one started: it would
    only repeat that tick's work (thousands of no-op enqueues). Otherwise note the start.

    `score` is when arq was to run this tick (ms). arq enqueues the next tick while it starts
    this one, so comparing with the time a tick was enqueued, rather than due, would skip
    every other tick when they are a second apart.
    """
    last = await redis.get(TICK_STARTED_KEY)
    if score is not None and last is not None and float(last) > score / 1000:
        return True
    await redis.set(TICK_STARTED_KEY, f"{now.timestamp():.3f}", ex=3600)
    return False
