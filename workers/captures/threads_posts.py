"""`capture_threads_post(media_id, slot)`: one snapshot of a Threads post's lifetime counters,
then the next slot of its decaying schedule (workers.captures.slots.PostSchedule). Failures are
handled as for stories (workers.captures.stories): retried while that can help, then the slot is
skipped and the schedule goes on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from core.config import Settings
from jobqueue.names import CAPTURE_THREADS_POST
from models.db import session_scope
from models.types import utcnow
from reports.worker_metrics import SCHEDULED
from store.due_captures import (
    DONE,
    TRACKED,
    CaptureTarget,
    capture_target,
    close_capture,
    schedule_capture,
)
from store.recording import MetricRow, Subject, record_snapshot
from store.threads_bookkeeping import ACTIVE, PLATFORM, POST, flag_threads_reauth
from workers.captures.jobs import (
    CAPTURE_MAX_TRIES,
    capture_error_recorder,
    capture_give_up,
    close,
    enqueue_capture,
    lag_seconds,
    note_account,
    observe_lag,
    retry_later,
    skip_slot,
    timed,
)
from workers.captures.slots import PostSchedule
from workers.captures.threads_polls import threads_account
from workers.meta.api_errors import AuthError, MetaError, ObjectNotFound
from workers.meta.threads_api import ThreadsClient
from workers.runtime.context import Context, in_thread
from workers.runtime.failures import GAVE_UP, count, guarded


def post_schedule(settings: Settings) -> PostSchedule:
    return PostSchedule(tuple(settings.post_snapshot_offsets))


_note_error = capture_error_recorder(PLATFORM)


@guarded(
    CAPTURE_THREADS_POST,
    max_tries=CAPTURE_MAX_TRIES,
    record=_note_error,
    give_up=capture_give_up(PLATFORM, TRACKED, lambda *args: _skip(*args)),
)
async def capture_threads_post(ctx: Context, media_id: str, slot: str) -> str:
    """Take the slot's snapshot unless it is stale; schedule the next one or finish."""
    engine: Engine = ctx["engine"]
    done = timed(ctx, f"threads post {media_id} {slot}")
    target = await in_thread(ctx, capture_target, engine, PLATFORM, media_id)
    note_account(ctx, target)
    if target is None or target.media.capture_state != TRACKED or target.media.next_slot != slot:
        return done("skipped: not due (captured already, closed or unknown)")
    account = target.account
    if account.threads_token is None or account.threads_state != ACTIVE:
        return done(await _skip(ctx, target, slot, "the Threads token needs re-authorisation"))
    client: ThreadsClient = ctx["threads"]
    try:
        rows, body = await client.post_insights(threads_account(account), media_id)
    except MetaError as exc:
        return done(await _failed(ctx, target, slot, exc))
    summary, following, lag = await in_thread(ctx, _record, ctx, target, slot, rows, body)
    observe_lag(ctx, POST, SCHEDULED, lag)
    if following is not None:
        await enqueue_capture(ctx["redis"], PLATFORM, media_id, *following)
    return done(summary)


def _record(
    ctx: Context,
    target: CaptureTarget,
    slot: str,
    rows: list[MetricRow],
    body: dict[str, Any],
) -> tuple[str, tuple[str, datetime] | None, float | None]:
    """The snapshot and, in the same transaction, the post's next slot or its end; with the
    seconds it came after its due time (None: no new snapshot)."""
    media = target.media
    following = None
    with session_scope(ctx["engine"]) as session:
        snapshot, created = record_snapshot(
            session=session,
            subject=Subject(media.account_id, PLATFORM, POST, media.media_id),
            slot=slot,
            source="api",
            metrics=rows,
            raw=body,
            api_version=ctx["settings"].threads_api_version,
        )
        ids: dict[str, Any] = {"platform": PLATFORM, "media_id": media.media_id}
        following = _next(ctx, target, snapshot.captured_at)
        lag = lag_seconds(media.next_capture_at, snapshot.captured_at) if created else None
        if following is None:
            close_capture(session, **ids, state=DONE)
        else:
            schedule_capture(session, **ids, slot=following[0], due=following[1])
    verb = "captured" if created else "already captured"
    return f"{verb} {slot} as version {snapshot.version}", following, lag


def _next(ctx: Context, target: CaptureTarget, now: datetime) -> tuple[str, datetime] | None:
    posted_at = target.media.posted_at
    if posted_at is None:
        return None
    return post_schedule(ctx["settings"]).after(posted_at, now)


async def _failed(ctx: Context, target: CaptureTarget, slot: str, exc: MetaError) -> str:
    """Throttled or transient: retry (bounded). Auth: flag the Threads token once. Gone:
    close. Any other rejection, or the last try: skip the slot, the schedule goes on."""
    engine: Engine = ctx["engine"]
    media_id = target.media.media_id
    await _note_error(ctx, str(exc), media_id, slot)
    await retry_later(ctx, CAPTURE_THREADS_POST, exc)
    await count(ctx, CAPTURE_THREADS_POST, GAVE_UP)
    if isinstance(exc, ObjectNotFound):
        reason = f"the post is gone (deleted, or no longer readable): {exc}"
        await in_thread(ctx, close, engine, PLATFORM, media_id, DONE, reason)
        return "done: post not found"
    if isinstance(exc, AuthError):
        account_id = target.media.account_id
        await in_thread(ctx, flag_threads_reauth, engine, account_id=account_id, reason=str(exc))
    return await _skip(ctx, target, slot, f"{type(exc).__name__}: {exc}")


async def _skip(ctx: Context, target: CaptureTarget, slot: str, why: str) -> str:
    return await skip_slot(
        ctx,
        platform=PLATFORM,
        media_id=target.media.media_id,
        slot=slot,
        following=_next(ctx, target, utcnow()),
        why=why,
        closed_state=DONE,
    )
