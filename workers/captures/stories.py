"""Story jobs: each account's listing, and each slot's capture.

- `poll_stories(account_id)`: lists the account's live stories (all pages); a new story gets
  its first capture at once.
- `capture_story(media_id, slot)`: one snapshot (3 insights calls, workers.meta.metric_sets), then
  the next slot is scheduled (workers.captures.slots) and enqueued for its due time.
The scheduler tick (workers.captures.tick) enqueues both from what the database says is due.

Failures: a throttle waits out Meta's pause, an expired token flags the account, a transient
failure or an unexpected exception is retried (workers.runtime.failures) and then given up: a
capture skips its slot, a listing is due again with back-off. A rejection that retrying cannot fix
(a permission, an account id Meta refuses) backs the account's listings off up to a day, with
the reason in `account.ig_problem` (store.backoff).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from core.config import Settings
from jobqueue.names import CAPTURE_STORY, POLL_STORIES
from models.db import session_scope
from models.types import utcnow
from reports.worker_metrics import SCHEDULED
from store.backoff import (
    INSTAGRAM,
    LONGEST_WAIT,
    human,
    record_error,
    record_failure,
    record_success,
)
from store.due_captures import (
    FINAL_CAPTURED,
    LIVE,
    MISSED,
    CaptureTarget,
    capture_target,
    close_capture,
    schedule_capture,
)
from store.recording import Subject, record_snapshot
from store.story_bookkeeping import (
    ACTIVE,
    STORY_LIFETIME,
    FoundStory,
    account_credentials,
    add_stories,
    flag_reauth,
)
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
from workers.captures.slots import FINAL, StorySchedule
from workers.meta.api_errors import AuthError, MetaError, ObjectNotFound, Throttled, Transient
from workers.meta.graph_api import IgMedia, StoryInsights
from workers.runtime.context import Context, in_thread
from workers.runtime.failures import (
    GAVE_UP,
    RETRY,
    count,
    guarded,
    job_try,
    rejection,
    retry,
    retry_delay,
)

log = logging.getLogger(__name__)

PLATFORM = "instagram"
LISTING_MAX_TRIES = 3  # transient and unexpected failures; then due again with back-off


def story_schedule(settings: Settings) -> StorySchedule:
    return StorySchedule(settings.story_snapshot_seconds, settings.story_final_margin_seconds)


async def _note_listing_error(ctx: Context, error: str, account_id: int) -> None:
    await in_thread(
        ctx, record_error, ctx["engine"], account_id=account_id, side=INSTAGRAM, error=error
    )


async def _listing_gave_up(ctx: Context, error: str, account_id: int) -> str:
    """The last try of a listing that kept raising: due again later, with back-off."""
    reason = f"listing stories failed unexpectedly ({error}): see the worker log"
    return await _account_failed(ctx, account_id, error, reason, cap=_poll_every(ctx))


@guarded(
    POLL_STORIES,
    max_tries=LISTING_MAX_TRIES,
    record=_note_listing_error,
    give_up=_listing_gave_up,
)
async def poll_stories(ctx: Context, account_id: int) -> str:
    """List the account's live stories; start capturing the new ones at once."""
    settings: Settings = ctx["settings"]
    engine: Engine = ctx["engine"]
    done = timed(ctx, f"stories of account {account_id}")
    account = await in_thread(ctx, account_credentials, engine, account_id)
    if account is None or account.state != ACTIVE:
        return done("skipped: account removed or not active")
    try:
        listed = await ctx["graph"].list_stories(account)
    except MetaError as exc:
        return done(await _listing_failed(ctx, account_id, exc))
    now = utcnow()
    fresh = await in_thread(
        ctx, _store_listing, engine, account_id, listed, now, story_schedule(settings)
    )
    for media_id, slot in fresh:
        await enqueue_capture(ctx["redis"], PLATFORM, media_id, slot)
    await in_thread(
        ctx,
        record_success,
        engine,
        account_id=account_id,
        side=INSTAGRAM,
        next_at=now + _poll_every(ctx),
    )
    return done(f"{len(listed)} live, {len(fresh)} new")


def _poll_every(ctx: Context) -> timedelta:
    return timedelta(seconds=ctx["settings"].story_poll_seconds)


async def _listing_failed(ctx: Context, account_id: int, exc: MetaError) -> str:
    """Throttled: wait out the pause. Auth: flag the account once. Transient: retry, then
    back off. Any other rejection (a permission, an account id Meta refuses) fails the same
    way until someone fixes it: back off up to a day and say why."""
    engine: Engine = ctx["engine"]
    error = str(exc)
    if isinstance(exc, Throttled):
        wait = timedelta(seconds=max(exc.retry_after, 1.0))
        await in_thread(
            ctx,
            record_error,
            engine,
            account_id=account_id,
            side=INSTAGRAM,
            error=error,
            next_at=utcnow() + wait,
        )
        outcome = f"throttled, next listing in {human(wait)}"
    elif isinstance(exc, AuthError):
        if await in_thread(ctx, flag_reauth, engine, account_id=account_id, reason=error):
            log.warning(
                "account %s needs re-authorisation: %s",
                account_id,
                exc,
                extra={"account_id": account_id},
            )
        outcome = "the token needs re-authorisation"
    elif isinstance(exc, Transient):
        await _note_listing_error(ctx, error, account_id)
        if job_try(ctx) < LISTING_MAX_TRIES:
            await retry(ctx, POLL_STORIES, retry_delay(job_try(ctx)), error)
        reason = f"Meta kept failing ({error})"
        outcome = await _account_failed(ctx, account_id, error, reason, cap=_poll_every(ctx))
    else:
        reason = rejection(exc, INSTAGRAM)
        outcome = await _account_failed(ctx, account_id, error, reason, cap=LONGEST_WAIT)
    await count(ctx, POLL_STORIES, GAVE_UP)
    return f"listing failed ({type(exc).__name__}): {outcome}"


async def _account_failed(
    ctx: Context, account_id: int, error: str, reason: str, *, cap: timedelta
) -> str:
    wait = await in_thread(
        ctx,
        record_failure,
        ctx["engine"],
        account_id=account_id,
        side=INSTAGRAM,
        error=error,
        reason=reason,
        cap=cap,
    )
    log.warning(
        "account %s: %s; next listing in %s",
        account_id,
        reason,
        human(wait),
        extra={"account_id": account_id},
    )
    return f"next listing in {human(wait)}"


def _store_listing(
    engine: Engine, account_id: int, listed: list[IgMedia], now: datetime, plan: StorySchedule
) -> list[tuple[str, str]]:
    """Store new live stories and set their first slot; return (media id, slot) to enqueue."""
    found = [
        FoundStory(m.id, m.timestamp, m.media_type, m.media_product_type, m.permalink, m.caption)
        for m in listed
        if m.timestamp is not None and m.timestamp + STORY_LIFETIME > now
    ]
    slots = []
    with session_scope(engine) as session:
        for story in add_stories(session, account_id=account_id, stories=found, now=now):
            slot = plan.on_discovery(story.posted_at, story.posted_at + STORY_LIFETIME, now)
            schedule_capture(
                session, platform=PLATFORM, media_id=story.media_id, slot=slot, due=now
            )
            slots.append((story.media_id, slot))
    return slots


_note_capture_error = capture_error_recorder(PLATFORM)


@guarded(
    CAPTURE_STORY,
    max_tries=CAPTURE_MAX_TRIES,
    record=_note_capture_error,
    give_up=capture_give_up(PLATFORM, LIVE, lambda *args: _skip(*args)),
)
async def capture_story(ctx: Context, media_id: str, slot: str) -> str:
    """Take one slot's snapshot unless it is stale, then schedule the next slot."""
    engine: Engine = ctx["engine"]
    done = timed(ctx, f"story {media_id} {slot}")
    target = await in_thread(ctx, capture_target, engine, PLATFORM, media_id)
    note_account(ctx, target)
    if target is None or target.media.capture_state != LIVE or target.media.next_slot != slot:
        return done("skipped: not due (captured already, closed or unknown)")
    expires_at = target.media.expires_at
    if expires_at is None or target.media.posted_at is None:
        return done("skipped: story times unknown")
    now = utcnow()
    if now >= expires_at:
        reason = f"the {slot} capture ran after expiry"
        await in_thread(ctx, close, engine, PLATFORM, media_id, MISSED, reason)
        return done("missed: expired")
    plan = story_schedule(ctx["settings"])
    if target.account.state != ACTIVE:
        return done(await _skip(ctx, target, slot, "account needs re-authorisation"))
    if plan.is_late(slot, target.media.posted_at, now) and now < plan.final_due(expires_at):
        why = "the workers are behind: a late regular capture gives way to those on time"
        return done(await _skip(ctx, target, slot, why, is_error=False))
    try:
        insights = await ctx["graph"].story_insights(target.account, media_id)
    except MetaError as exc:
        return done(await _capture_failed(ctx, target, slot, exc))
    taken = FINAL if now >= plan.final_due(expires_at) else slot
    summary, following, lag = await in_thread(ctx, _record, engine, target, taken, insights, plan)
    observe_lag(ctx, "story", FINAL if taken == FINAL else SCHEDULED, lag)
    if following is not None:
        await enqueue_capture(ctx["redis"], PLATFORM, media_id, *following)
    return done(summary)


def _record(
    engine: Engine,
    target: CaptureTarget,
    taken: str,
    insights: StoryInsights,
    plan: StorySchedule,
) -> tuple[str, tuple[str, datetime] | None, float | None]:
    """The snapshot, and in the same transaction the story's next slot or its closing; with
    the seconds it came after its due time (None: no new snapshot)."""
    media = target.media
    assert media.posted_at is not None
    assert media.expires_at is not None
    raw = {"insights": insights.raw, "dropped": list(insights.dropped)}
    following = None
    with session_scope(engine) as session:
        snapshot, created = record_snapshot(
            session=session,
            subject=Subject(media.account_id, PLATFORM, "story", media.media_id),
            slot=taken,
            source="api",
            metrics=insights.rows,
            raw=raw,
            api_version=insights.api_version,
        )
        now = snapshot.captured_at
        due = plan.final_due(media.expires_at) if taken == FINAL else media.next_capture_at
        lag = lag_seconds(due, now) if created else None
        ids: dict[str, Any] = {"platform": PLATFORM, "media_id": media.media_id}
        if taken == FINAL and now < media.expires_at:
            close_capture(session, **ids, state=FINAL_CAPTURED, final_snapshot_id=snapshot.id)
        elif taken == FINAL:
            close_capture(session, **ids, state=MISSED, reason="the final capture ended late")
        else:
            following = plan.after(taken, media.posted_at, media.expires_at, now)
            slot, due = following or (None, None)
            schedule_capture(session, **ids, slot=slot, due=due)
    verb = "captured" if created else "already captured"
    return f"{verb} {taken} as version {snapshot.version}", following, lag


async def _capture_failed(ctx: Context, target: CaptureTarget, slot: str, exc: MetaError) -> str:
    """Throttled or transient: retry (bounded). Auth: flag the account. Gone: close. Any
    other rejection, or the last try: skip the slot, the schedule goes on."""
    engine: Engine = ctx["engine"]
    media_id = target.media.media_id
    await _note_capture_error(ctx, str(exc), media_id, slot)
    if slot == FINAL and isinstance(exc, Throttled):
        return await _final_after_pause(ctx, media_id, exc)
    await retry_later(ctx, CAPTURE_STORY, exc)
    await count(ctx, CAPTURE_STORY, GAVE_UP)
    if isinstance(exc, ObjectNotFound):
        reason = f"the story is gone (deleted or expired early): {exc}"
        await in_thread(ctx, close, engine, PLATFORM, media_id, MISSED, reason)
        return "missed: story not found"
    account_id = target.media.account_id
    if isinstance(exc, AuthError) and await in_thread(
        ctx, flag_reauth, engine, account_id=account_id, reason=str(exc)
    ):
        log.warning(
            "account %s needs re-authorisation: %s",
            account_id,
            exc,
            extra={"account_id": account_id},
        )
    return await _skip(ctx, target, slot, f"{type(exc).__name__}: {exc}")


async def _final_after_pause(ctx: Context, media_id: str, exc: Throttled) -> str:
    """A throttled final waits out the pause in the database, not in arq: a job arq retries
    loses its headstart (workers.captures.jobs.FINAL_HEADSTART) and would queue behind every
    capture the pause held back, past expiry. The tick enqueues the final again, ahead of
    them, as soon as the pause is over; waiting costs no call and no try."""
    due = utcnow() + timedelta(seconds=max(exc.retry_after, 0.5))

    def reschedule() -> None:
        with session_scope(ctx["engine"]) as session:
            schedule_capture(session, platform=PLATFORM, media_id=media_id, slot=FINAL, due=due)

    await in_thread(ctx, reschedule)
    await count(ctx, CAPTURE_STORY, RETRY)
    return f"final throttled: due again at {due:%H:%M:%S} UTC, enqueued by the tick ahead of all"


async def _skip(
    ctx: Context, target: CaptureTarget, slot: str, why: str, *, is_error: bool = True
) -> str:
    media = target.media
    assert media.posted_at is not None
    assert media.expires_at is not None
    plan = story_schedule(ctx["settings"])
    following = plan.after(slot, media.posted_at, media.expires_at, utcnow())
    return await skip_slot(
        ctx,
        platform=PLATFORM,
        media_id=media.media_id,
        slot=slot,
        following=following,
        why=why,
        closed_state=MISSED,
        is_error=is_error,
    )
