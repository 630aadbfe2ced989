"""What every scheduled capture job shares: enqueueing by platform, retry or give up on
Meta's errors, moving a schedule on past a slot that cannot be taken, one log line per job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from arq.connections import ArqRedis
from sqlalchemy.engine import Engine

from jobqueue.names import (
    CAPTURE_IG_MEDIA,
    CAPTURE_STORY,
    CAPTURE_THREADS_POST,
    IG_MEDIA,
    MAIN_QUEUE,
    capture_job_id,
)
from models.db import session_scope
from models.types import utcnow
from store.due_captures import (
    CaptureTarget,
    capture_target,
    close_capture,
    note_capture_error,
    schedule_capture,
)
from workers.captures.slots import FINAL
from workers.meta.api_errors import MetaError, Throttled, Transient
from workers.runtime.context import Context, in_thread
from workers.runtime.failures import job_fields, job_try, retry, retry_delay

log = logging.getLogger(__name__)

CAPTURE_MAX_TRIES = 8  # throttle pauses, transient and unexpected failures; the last moves on
# capture key -> job: stories, Threads posts, and feed posts and Reels (rows of platform
# `instagram` with subject_type feed/reel: store.due_captures.DueCapture.job).
JOBS = {"instagram": CAPTURE_STORY, "threads": CAPTURE_THREADS_POST, IG_MEDIA: CAPTURE_IG_MEDIA}

# arq runs the due jobs lowest score (due time) first. A story's final capture is scored this
# long before its due time, so it overtakes every regular capture waiting when the workers
# are behind: missing a regular slot costs one point of a series, missing the final loses
# the story's last values for good. (arq's own log line then says "delayed=3600s".)
FINAL_HEADSTART = timedelta(hours=1)

Next = tuple[str, datetime] | None


async def enqueue_capture(
    redis: ArqRedis, platform: str, media_id: str, slot: str, due: datetime | None = None
) -> bool:
    """Enqueue under the deterministic id: a slot already queued, running or done is a no-op.

    A story's final is enqueued only once due (a score in the past means "now" to arq), ahead
    of the queue; one due later is left to the scheduler tick, which enqueues it on time.
    Returns False for such a final.
    """
    defer = due
    if platform == "instagram" and slot == FINAL:
        now = utcnow()
        if due is not None and due > now:
            return False
        defer = (due or now) - FINAL_HEADSTART
    await redis.enqueue_job(
        JOBS[platform],
        media_id,
        slot,
        _job_id=capture_job_id(platform, media_id, slot),
        _defer_until=defer,
        _queue_name=MAIN_QUEUE,  # whichever lane enqueues it (the tick runs in another)
    )
    return True


async def retry_later(ctx: Context, function: str, exc: MetaError) -> None:
    """Raise arq's Retry for a throttled or transient failure while tries remain: after the
    pause Meta asked for, or 1 s, 2 s, 4 s ... for a transient one."""
    if isinstance(exc, Throttled | Transient) and job_try(ctx) < CAPTURE_MAX_TRIES:
        delay = exc.retry_after if isinstance(exc, Throttled) else retry_delay(job_try(ctx))
        await retry(ctx, function, delay, str(exc))


async def skip_slot(
    ctx: Context,
    *,
    platform: str,
    media_id: str,
    slot: str,
    following: Next,
    why: str,
    closed_state: str,
    is_error: bool = True,
    job: str | None = None,
) -> str:
    """Give up on this slot but keep the schedule going; close with `closed_state` when it
    was the last one. `why` becomes the media's last error unless `is_error` is False;
    `job` is the capture key of the next slot when it is not the platform (JOBS)."""
    engine: Engine = ctx["engine"]

    def advance() -> None:
        if is_error:
            note_capture_error(engine, platform=platform, media_id=media_id, error=why)
        with session_scope(engine) as session:
            slot_name, due = following or (None, None)
            schedule_capture(session, platform=platform, media_id=media_id, slot=slot_name, due=due)
            if following is None:
                close_capture(
                    session, platform=platform, media_id=media_id, state=closed_state, reason=why
                )

    await in_thread(ctx, advance)
    if following is not None:
        await enqueue_capture(ctx["redis"], job or platform, media_id, *following)
    log.warning("%s %s: slot %s skipped: %s", platform, media_id, slot, why, extra=job_fields(ctx))
    return f"skipped {slot}: {why}"


def close(engine: Engine, platform: str, media_id: str, state: str, reason: str | None) -> None:
    with session_scope(engine) as session:
        close_capture(session, platform=platform, media_id=media_id, state=state, reason=reason)


def log_job(ctx: Context, what: str, outcome: str, started: float) -> None:
    """One line per job: what, outcome, duration and try; ids in `extra`."""
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    extra = job_fields(ctx, duration_ms=duration_ms)
    log.info(
        "%s: %s in %.1f ms (try %s)", what, outcome, duration_ms, extra["job_try"], extra=extra
    )


def timed(ctx: Context, what: str) -> Callable[[str], str]:
    """Start timing a job; call the result with the outcome to log it and return it."""
    started = time.monotonic()

    def done(outcome: str) -> str:
        log_job(ctx, what, outcome, started)
        return outcome

    return done


def lag_seconds(due: datetime | None, captured_at: datetime) -> float | None:
    """How long after its due time a snapshot was taken (None when no due time was set)."""
    return None if due is None else (captured_at - due).total_seconds()


def observe_lag(ctx: Context, subject_type: str, kind: str, lag: float | None) -> None:
    """A new snapshot's lag in the process's capture-lag histogram (none: nothing new)."""
    metrics = ctx.get("metrics")
    if metrics is not None and lag is not None:
        metrics.captured(subject_type, kind, lag)


def note_account(ctx: Context, target: CaptureTarget | None) -> None:
    """A capture's account id on the job's later log lines (it comes with the media row)."""
    if target is not None and target.account.id is not None:
        ctx["account_id"] = target.account.id


Skip = Callable[[Context, CaptureTarget, str, str], Awaitable[str]]


def capture_error_recorder(platform: str) -> Callable[..., Awaitable[None]]:
    """`record` for workers.runtime.failures.guarded: a failed try's error on the media row."""

    async def record(ctx: Context, error: str, media_id: str, slot: str) -> None:
        engine: Engine = ctx["engine"]
        await in_thread(
            ctx, note_capture_error, engine, platform=platform, media_id=media_id, error=error
        )

    return record


def capture_give_up(platform: str, open_state: str, skip: Skip) -> Callable[..., Awaitable[str]]:
    """`give_up` for workers.runtime.failures.guarded: the last try of a capture that kept raising
    skips its slot (if still due) and keeps the schedule going."""

    async def give_up(ctx: Context, error: str, media_id: str, slot: str) -> str:
        target = await in_thread(ctx, capture_target, ctx["engine"], platform, media_id)
        media = None if target is None else target.media
        if media is None or media.capture_state != open_state or media.next_slot != slot:
            return "gave up; the slot is no longer due"
        assert target is not None
        return await skip(ctx, target, slot, f"gave up after {job_try(ctx)} tries: {error}")

    return give_up
