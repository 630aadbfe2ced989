"""Threads jobs: the user's insights every THREADS_POLL_SECONDS, its posts, each post's
decaying snapshot schedule, and the `views` backfill run when an account is linked.

Threads has no insights webhooks and its counters only show "now"
(https://developers.facebook.com/docs/threads/insights), so every poll is a snapshot version
of the Threads user (`subject_type='threads_user'`) and every post capture a version of the
post (`threads_post`). The user's range totals (likes, replies, reposts, quotes, clicks) are
asked one closed Meta day at a time and stored with that day's end as `end_time`, like the
`views` series, so that no day is counted twice (workers.meta.days).

A poll stops at a throttle (due again after the pause), an expired token (flagged), a
transient failure (retried whole, nothing kept meanwhile, then due again with back-off) or a
rejection of the account (back-off up to a day, the reason in `account.threads_problem`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from jobqueue.names import POLL_THREADS
from models.accounts import Account
from models.db import session_scope
from models.types import utcnow
from store.backoff import (
    LONGEST_WAIT,
    THREADS,
    human,
    record_error,
    record_failure,
    record_success,
)
from store.due_captures import schedule_capture
from store.recording import (
    MetricRow,
    Subject,
    mark_unavailable,
    record_snapshot,
    unavailable_metrics,
)
from store.story_bookkeeping import account_credentials
from store.threads_bookkeeping import (
    ACTIVE,
    PLATFORM,
    USER,
    FoundPost,
    add_posts,
    flag_threads_reauth,
    last_capture_at,
    last_views_day,
    newest_post_at,
    stored_slots,
    stored_windows,
)
from workers.captures.jobs import enqueue_capture, timed
from workers.meta.api_errors import (
    AuthError,
    FeatureNotAvailable,
    InvalidMetric,
    MetaError,
    Throttled,
    Transient,
)
from workers.meta.days import Window, due_windows
from workers.meta.threads_api import ThreadsAccount, ThreadsClient
from workers.runtime.context import Context, in_thread
from workers.runtime.failures import GAVE_UP, count, guarded, job_try, rejection, retry, retry_delay

log = logging.getLogger(__name__)

INSIGHTS_FLOOR = datetime.fromtimestamp(1712991600, UTC)  # "any timestamp before ... rejected"
VIEWS_OVERLAP = timedelta(days=2)  # the last days' views are still settling: ask them again
TOTALS = ("likes", "replies", "reposts", "quotes", "clicks")
# Range totals are asked per closed Meta day (workers.meta.days): up to this many calls a
# poll, for days up to this far back, each day once it ends and once more when settled.
TOTALS_CALLS_PER_POLL = 4
TOTALS_HORIZON_DAYS = 30
TOTALS_SETTLE = timedelta(days=2)
DEMOGRAPHICS = ("country", "city", "age", "gender")
UNAVAILABLE_RETRY = timedelta(days=7)  # ask again for a metric Meta refused, once a week
BACKFILL_CHUNK = timedelta(days=30)
POLL_MAX_TRIES = 3  # transient and unexpected failures; then due again with back-off


@dataclass
class Collected:
    """The rows of one poll's calls; `stop` is set once an error makes more calls pointless."""

    rows: list[MetricRow] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    stop: MetaError | None = None


def threads_account(account: Account) -> ThreadsAccount:
    assert account.threads_user_id is not None
    assert account.threads_token is not None
    return ThreadsAccount(account.threads_user_id, account.threads_token)


async def _note_poll_error(ctx: Context, error: str, account_id: int, due_epoch: int) -> None:
    await in_thread(
        ctx, record_error, ctx["engine"], account_id=account_id, side=THREADS, error=error
    )


async def _poll_gave_up(ctx: Context, error: str, account_id: int, due_epoch: int) -> str:
    """The last try of a poll that kept raising: due again later, with back-off."""
    reason = f"polling Threads failed unexpectedly ({error}): see the worker log"
    return await _back_off(ctx, account_id, error, reason, cap=_poll_every(ctx))


@guarded(POLL_THREADS, max_tries=POLL_MAX_TRIES, record=_note_poll_error, give_up=_poll_gave_up)
async def poll_threads(ctx: Context, account_id: int, due_epoch: int) -> str:
    """One poll: user insights (a snapshot), demographics once a day, and new posts."""
    engine: Engine = ctx["engine"]
    done = timed(ctx, f"threads of account {account_id}")
    account = await in_thread(ctx, account_credentials, engine, account_id)
    if account is None or account.threads_user_id is None or account.threads_state != ACTIVE:
        return done("skipped: no usable Threads token")
    got = await _user_insights(ctx, account)
    if isinstance(got.stop, Transient) and job_try(ctx) < POLL_MAX_TRIES:  # nothing kept yet
        await _note_poll_error(ctx, str(got.stop), account_id, due_epoch)
        await retry(ctx, POLL_THREADS, retry_delay(job_try(ctx)), str(got.stop))
    summary = [f"{len(got.rows)} values"]
    if got.stop is None:
        summary.append(await _demographics(ctx, account))
        summary.append(await _list_posts(ctx, account))
    if got.rows:
        await in_thread(ctx, _store_user, engine, account, f"poll:{due_epoch}", "insights", got)
    if got.stop is None:
        now = utcnow()
        await in_thread(
            ctx,
            record_success,
            engine,
            account_id=account_id,
            side=THREADS,
            next_at=now + _poll_every(ctx),
        )
        return done(", ".join(summary))
    return done(f"stopped: {got.stop}; {await _poll_failed(ctx, account_id, got.stop)}")


def _poll_every(ctx: Context) -> timedelta:
    return timedelta(seconds=ctx["settings"].threads_poll_seconds)


async def _poll_failed(ctx: Context, account_id: int, exc: MetaError) -> str:
    """When the poll that `exc` stopped is due again: after a throttle's pause; at the usual
    interval after an auth failure (the token is flagged, polls wait for a new one); with
    back-off after the last transient try (at most the usual interval) or a rejection of the
    account (up to a day)."""
    error = str(exc)
    await count(ctx, POLL_THREADS, GAVE_UP)
    if isinstance(exc, Throttled | AuthError):
        wait = _poll_every(ctx)
        if isinstance(exc, Throttled):
            wait = timedelta(seconds=max(exc.retry_after, 1.0))
        await in_thread(
            ctx,
            record_error,
            ctx["engine"],
            account_id=account_id,
            side=THREADS,
            error=error,
            next_at=utcnow() + wait,
        )
        return f"next poll in {human(wait)}"
    if isinstance(exc, Transient):
        reason = f"Meta kept failing ({error})"
        return await _back_off(ctx, account_id, error, reason, cap=_poll_every(ctx))
    return await _back_off(ctx, account_id, error, rejection(exc, THREADS), cap=LONGEST_WAIT)


async def _back_off(
    ctx: Context, account_id: int, error: str, reason: str, *, cap: timedelta
) -> str:
    wait = await in_thread(
        ctx,
        record_failure,
        ctx["engine"],
        account_id=account_id,
        side=THREADS,
        error=error,
        reason=reason,
        cap=cap,
    )
    log.warning(
        "account %s: %s; next Threads poll in %s",
        account_id,
        reason,
        human(wait),
        extra={"account_id": account_id},
    )
    return f"next poll in {human(wait)}"


async def _user_insights(ctx: Context, account: Account) -> Collected:
    """views since the last stored day (with overlap), the totals of the closed days due
    (workers.meta.days), followers_count."""
    engine: Engine = ctx["engine"]
    assert account.threads_user_id is not None
    last = await in_thread(ctx, last_views_day, engine, threads_user_id=account.threads_user_id)
    now = utcnow()
    since = max(INSIGHTS_FLOOR, (last or now) - VIEWS_OVERLAP)
    got = Collected()
    span: dict[str, Any] = {"since": int(since.timestamp()), "until": int(now.timestamp())}
    await _call(ctx, account, got, "views", ("views",), **span)
    for window in await _total_windows(ctx, account, now):
        name = f"totals:{window.since.date().isoformat()}"
        await _call(ctx, account, got, name, TOTALS, window=window)
    await _call(ctx, account, got, "followers_count", ("followers_count",))
    return got


async def _total_windows(ctx: Context, account: Account, now: datetime) -> list[Window]:
    """The closed Meta days whose totals are due: each once it ends and once settled."""
    assert account.threads_user_id is not None
    start = now - timedelta(days=TOTALS_HORIZON_DAYS + 2)
    stored = await in_thread(
        ctx,
        stored_windows,
        ctx["engine"],
        threads_user_id=account.threads_user_id,
        metrics=TOTALS,
        since=start,
    )
    return due_windows(
        now,
        stored,
        horizon=TOTALS_HORIZON_DAYS,
        settle=TOTALS_SETTLE,
        limit=TOTALS_CALLS_PER_POLL,
        floor=INSIGHTS_FLOOR,
    )


async def _call(
    ctx: Context,
    account: Account,
    got: Collected,
    name: str,
    metrics: tuple[str, ...],
    *,
    window: Window | None = None,
    **options: Any,
) -> None:
    """One user-insights call into `got`, minus metrics Meta said it will not give; with a
    `window`, over that day only, every row dated by the window's end."""
    engine: Engine = ctx["engine"]
    assert account.id is not None
    skip = await in_thread(
        ctx, unavailable_metrics, engine, platform=PLATFORM, account_id=account.id, now=utcnow()
    )
    wanted = [metric for metric in metrics if metric not in skip]
    if not wanted or got.stop is not None:
        return
    client: ThreadsClient = ctx["threads"]
    if window is not None:
        options.update(window.params)
    try:
        rows, body = await client.user_insights(threads_account(account), wanted, **options)
    except FeatureNotAvailable as exc:
        await _unavailable(ctx, account.id, wanted, exc)
        return
    except MetaError as exc:
        await _failed(ctx, account.id, exc, got)
        return
    if window is not None:
        rows = [replace(row, end_time=window.until) for row in rows]
    got.rows.extend(rows)
    got.raw[name] = body


async def _unavailable(ctx: Context, account_id: int, metrics: list[str], exc: MetaError) -> None:
    fresh = await in_thread(
        ctx,
        mark_unavailable,
        ctx["engine"],
        platform=PLATFORM,
        account_id=account_id,
        metrics=metrics,
        reason=str(exc),
        retry_at=utcnow() + UNAVAILABLE_RETRY,
    )
    if fresh:
        log.warning(
            "account %s: Threads will not give %s: %s",
            account_id,
            ", ".join(fresh),
            exc,
            extra={"account_id": account_id},
        )


async def _failed(ctx: Context, account_id: int, exc: MetaError, got: Collected) -> None:
    """A rejected metric is noted and the poll goes on; anything else stops it (auth also
    flags the token, once), and poll_threads decides when it is due again."""
    if isinstance(exc, AuthError):
        flagged = await in_thread(
            ctx, flag_threads_reauth, ctx["engine"], account_id=account_id, reason=str(exc)
        )
        if flagged:
            log.warning(
                "account %s: the Threads token needs re-authorisation: %s",
                account_id,
                exc,
                extra={"account_id": account_id},
            )
    if isinstance(exc, InvalidMetric):
        got.raw.setdefault("errors", []).append(str(exc))
    else:
        got.stop = exc


async def _demographics(ctx: Context, account: Account) -> str:
    """follower_demographics once a day, one call per breakdown, as a snapshot of its own."""
    engine: Engine = ctx["engine"]
    assert account.threads_user_id is not None
    last = await in_thread(
        ctx, last_capture_at, engine, threads_user_id=account.threads_user_id, kind="demographics"
    )
    now = utcnow()
    if last is not None and now - last < timedelta(days=1):
        return "demographics: done today"
    got = Collected()
    for breakdown in DEMOGRAPHICS:
        await _call(ctx, account, got, breakdown, ("follower_demographics",), breakdown=breakdown)
    if got.rows:
        slot = f"day:{now.date().isoformat()}"
        await in_thread(ctx, _store_user, engine, account, slot, "demographics", got)
    return f"demographics: {len(got.rows)} values"


def _store_user(engine: Engine, account: Account, slot: str, kind: str, got: Collected) -> bool:
    """Record the snapshot; False when its slot was stored before."""
    assert account.id is not None
    assert account.threads_user_id is not None
    with session_scope(engine) as session:
        _, created = record_snapshot(
            session=session,
            subject=Subject(account.id, PLATFORM, USER, account.threads_user_id, kind),
            slot=slot,
            source="api",
            metrics=got.rows,
            raw=got.raw,
        )
    return created


async def _list_posts(ctx: Context, account: Account) -> str:
    """New posts since the newest known one (a day of overlap); each is captured at once."""
    engine: Engine = ctx["engine"]
    assert account.id is not None
    newest = await in_thread(ctx, newest_post_at, engine, account_id=account.id)
    since = None if newest is None else int((newest - timedelta(days=1)).timestamp())
    client: ThreadsClient = ctx["threads"]
    try:
        posts = await client.list_posts(threads_account(account), since=since)
    except MetaError as exc:
        return f"posts: listing failed: {type(exc).__name__}"
    found = [
        FoundPost(p.id, p.timestamp, p.media_type, p.permalink, p.text, dict(p.raw)) for p in posts
    ]
    fresh = await in_thread(ctx, _store_posts, engine, account.id, found)
    for post in fresh:
        await enqueue_capture(ctx["redis"], PLATFORM, post.media_id, "first")
    return f"posts: {len(posts)} listed, {len(fresh)} new"


def _store_posts(engine: Engine, account_id: int, found: list[FoundPost]) -> list[FoundPost]:
    now = utcnow()
    with session_scope(engine) as session:
        fresh = add_posts(session, account_id=account_id, posts=found)
        for post in fresh:
            schedule_capture(
                session, platform=PLATFORM, media_id=post.media_id, slot="first", due=now
            )
    return fresh


async def backfill_views(
    *,
    engine: Engine,
    client: ThreadsClient,
    account: Account,
    progress: Callable[[int, int, int], None] | None = None,
    now: datetime | None = None,
) -> int:
    """The `views` history from the API floor to now, one snapshot per 30-day chunk;
    `progress(chunks done, chunks in all, values stored)` after each chunk. Returns the
    values stored.

    A whole chunk is stored once (slot `backfill:<since>`) and skipped, with no call, when
    run again; the last, partial chunk is named by its end too, so a later run refreshes it.
    """
    assert account.threads_user_id is not None
    now = now or utcnow()
    starts = []
    start = INSIGHTS_FLOOR
    while start < now:
        starts.append(start)
        start += BACKFILL_CHUNK
    done = await asyncio.to_thread(
        stored_slots, engine, threads_user_id=account.threads_user_id, prefix="backfill:"
    )
    stored = 0
    for number, start in enumerate(starts, 1):
        until = min(start + BACKFILL_CHUNK, now)
        since_s, until_s = int(start.timestamp()), int(until.timestamp())
        slot = f"backfill:{since_s}" if until < now else f"backfill:{since_s}:{until_s}"
        if slot not in done:
            rows, body = await client.user_insights(
                threads_account(account), ["views"], since=since_s, until=until_s
            )
            got = Collected(rows=rows, raw={"views": body})
            if await asyncio.to_thread(_store_user, engine, account, slot, "insights", got):
                stored += len(rows)
        if progress is not None:
            progress(number, len(starts), stored)
    return stored
