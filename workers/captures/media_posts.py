"""`capture_ig_media(media_id, slot)`: one snapshot of a feed post's or Reel's lifetime counters,
then the next slot of its decaying schedule (IG_MEDIA_SNAPSHOTS from the media's timestamp,
then every 30 days until IG_MEDIA_MAX_AGE: workers.captures.slots.PostSchedule).

The calls are the version's FEED or REELS set (workers.meta.metric_sets), breakdowns in calls
of their own; a metric one media refuses is dropped for that media only, and flagged
`not_supported` in the snapshot (workers.meta.metric_drops). Budget: these captures are
enqueued at their due time, so a story's final (scored an hour ahead,
workers.captures.jobs.FINAL_HEADSTART) always runs first when the workers are behind, and
every call waits out the account's and the app's pauses (workers.meta.pacing). Failures are
handled as for Threads posts: retried while that can help, then the slot is skipped and the
schedule goes on; a media Meta no longer finds is closed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine

from core.config import Settings
from jobqueue.names import CAPTURE_IG_MEDIA, IG_MEDIA
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
from store.ig_media import PLATFORM
from store.recording import Subject, record_snapshot
from store.story_bookkeeping import flag_reauth
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
from workers.meta.api_errors import AuthError, MetaError, ObjectNotFound
from workers.meta.graph_api import GraphClient, StoryInsights
from workers.meta.metric_sets import media_calls
from workers.runtime.context import Context, in_thread
from workers.runtime.failures import GAVE_UP, count, guarded


def media_schedule(settings: Settings) -> PostSchedule:
    return PostSchedule(tuple(settings.media_snapshot_offsets))


_note_error = capture_error_recorder(PLATFORM)


@guarded(
    CAPTURE_IG_MEDIA,
    max_tries=CAPTURE_MAX_TRIES,
    record=_note_error,
    give_up=capture_give_up(PLATFORM, TRACKED, lambda *args: _skip(*args)),
)
async def capture_ig_media(ctx: Context, media_id: str, slot: str) -> str:
    """Take the slot's snapshot unless it is stale; schedule the next one or finish."""
    engine: Engine = ctx["engine"]
    done = timed(ctx, f"ig media {media_id} {slot}")
    target = await in_thread(ctx, capture_target, engine, PLATFORM, media_id)
    note_account(ctx, target)
    if target is None or target.media.capture_state != TRACKED or target.media.next_slot != slot:
        return done("skipped: not due (captured already, closed or unknown)")
    if target.account.state != "active":
        return done(await _skip(ctx, target, slot, "the account needs re-authorisation"))
    client: GraphClient = ctx["graph"]
    calls = media_calls(client.version, target.media.media_product_type or "FEED")
    try:
        insights = await client.story_insights(target.account, media_id, calls)
    except MetaError as exc:
        return done(await _failed(ctx, target, slot, exc))
    summary, following, lag = await in_thread(ctx, _record, ctx, target, slot, insights)
    observe_lag(ctx, target.media.subject_type, SCHEDULED, lag)
    if following is not None:
        await enqueue_capture(ctx["redis"], IG_MEDIA, media_id, *following)
    return done(summary)


def _record(
    ctx: Context, target: CaptureTarget, slot: str, insights: StoryInsights
) -> tuple[str, tuple[str, datetime] | None, float | None]:
    """The snapshot and, in the same transaction, the media's next slot or its end; with the
    seconds it came after its due time (None: no new snapshot)."""
    media = target.media
    with session_scope(ctx["engine"]) as session:
        snapshot, created = record_snapshot(
            session=session,
            subject=Subject(media.account_id, PLATFORM, media.subject_type, media.media_id),
            slot=slot,
            source="api",
            metrics=insights.rows,
            raw=insights.raw,
            api_version=insights.api_version,
        )
        media_id = media.media_id
        following = _next(ctx, target, snapshot.captured_at)
        lag = lag_seconds(media.next_capture_at, snapshot.captured_at) if created else None
        if following is None:
            close_capture(session, platform=PLATFORM, media_id=media_id, state=DONE)
        else:
            slot_name, due = following
            schedule_capture(session, platform=PLATFORM, media_id=media_id, slot=slot_name, due=due)
    verb = "captured" if created else "already captured"
    return f"{verb} {slot} as version {snapshot.version}", following, lag


def _next(ctx: Context, target: CaptureTarget, now: datetime) -> tuple[str, datetime] | None:
    posted_at = target.media.posted_at
    if posted_at is None:
        return None
    return media_schedule(ctx["settings"]).after(posted_at, now)


async def _failed(ctx: Context, target: CaptureTarget, slot: str, exc: MetaError) -> str:
    """Throttled or transient: retry (bounded). Auth: flag the account once. Gone: close.
    Any other rejection, or the last try: skip the slot, the schedule goes on."""
    engine: Engine = ctx["engine"]
    media_id = target.media.media_id
    await _note_error(ctx, str(exc), media_id, slot)
    await retry_later(ctx, CAPTURE_IG_MEDIA, exc)
    await count(ctx, CAPTURE_IG_MEDIA, GAVE_UP)
    if isinstance(exc, ObjectNotFound):
        reason = f"the media is gone (deleted, or no longer readable): {exc}"
        await in_thread(ctx, close, engine, PLATFORM, media_id, DONE, reason)
        return "done: media not found"
    if isinstance(exc, AuthError):
        account_id = target.media.account_id
        await in_thread(ctx, flag_reauth, engine, account_id=account_id, reason=str(exc))
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
        job=IG_MEDIA,
    )
