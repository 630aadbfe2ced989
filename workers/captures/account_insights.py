"""Instagram account insights (`GET /{ig-user-id}/insights`), one closed Meta day at a time.

Source: https://developers.facebook.com/docs/instagram-platform/api-reference/instagram-user/insights
(Facebook Login: https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/insights).
The interaction metrics are `period=day` with `metric_type=total_value`: asked with
`since`/`until` they total that range, so each is asked for one Meta day (Pacific midnight to
midnight, workers.meta.days) and stored with the day's end as end_time, like the Threads user
totals. `views` by `media_product_type` keeps the day's STORY views even for stories whose
own captures were missed. `follower_count` is a `time_series` metric (new followers per
day, only for the last 30 days, never today, none below 100 followers). The audience
demographics are `lifetime`, one breakdown per call and a `timeframe`, and state "now":
they are captured once a day as a snapshot of their own. `impressions` (deprecated from v22)
and the profile click metrics removed in v21 are never asked.

A run asks the closed days due (each once it ends and once more after 48 h, since Meta's data
can be delayed that long; missing days up to HORIZON_DAYS back, DAYS_PER_RUN a run), then the
demographics if not done today. It yields to a story final due soon on the same account,
honours the shared pauses (the Graph client), and ends at a throttle (due again after the
pause), a revoked token (the account is flagged), a transient failure (retried, then back-off)
or a rejection (back-off up to a day, the reason in `ig_insights_problem`). A metric Meta
refuses for the account is stored as a `not_supported` row and not asked for a week; a day
Meta has no data for is stored as `unavailable` rows: never as zero.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from jobqueue.names import CAPTURE_ACCOUNT_INSIGHTS
from models.accounts import Account
from models.db import session_scope
from models.types import utcnow
from store.account_insights import (
    DEMOGRAPHICS,
    INSIGHTS,
    PLATFORM,
    SUBJECT,
    last_demographics_at,
    next_final_due,
    postpone,
    stored_days,
)
from store.backoff import (
    IG_INSIGHTS,
    INSTAGRAM,
    LONGEST_WAIT,
    human,
    record_error,
    record_failure,
    record_success,
)
from store.recording import (
    NOT_SUPPORTED,
    MetricRow,
    Subject,
    mark_unavailable,
    record_snapshot,
    unavailable_metrics,
)
from store.story_bookkeeping import account_credentials, flag_reauth
from workers.meta.api_errors import AuthError, InvalidMetric, MetaError, Throttled, Transient
from workers.meta.days import Window, day_start, due_windows
from workers.meta.metric_sets import (
    DAY_CALLS,
    DEMOGRAPHIC_CALLS,
    AccountCall,
    account_rows,
)
from workers.runtime.context import Context, in_thread
from workers.runtime.failures import GAVE_UP, count, guarded, job_try, rejection, retry, retry_delay

log = logging.getLogger(__name__)

HORIZON_DAYS = 28  # catch-up: missing days this far back (follower_count: 30 days at most)
DAYS_PER_RUN = 3  # closed days asked per run (6 calls each); more follow a minute later
SETTLE = timedelta(hours=48)  # "Data used to calculate metrics may be delayed up to 48 hours"
CATCH_UP_GAP = timedelta(minutes=1)
AFTER_MIDNIGHT = timedelta(minutes=30)  # the daily run, after the Pacific day closed
FINAL_YIELD = timedelta(minutes=10)  # a story final due this soon goes first
REFUSED_RETRY = timedelta(days=7)
MAX_TRIES = 3


@dataclass
class Collected:
    """A run's rows and raw answers; `stop` once an error makes more calls pointless."""

    rows: list[MetricRow] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    stop: MetaError | None = None


async def _note_error(ctx: Context, error: str, account_id: int, due_epoch: int) -> None:
    await in_thread(
        ctx, record_error, ctx["engine"], account_id=account_id, side=IG_INSIGHTS, error=error
    )


async def _gave_up(ctx: Context, error: str, account_id: int, due_epoch: int) -> str:
    reason = f"account insights failed unexpectedly ({error}): see the worker log"
    return await _back_off(ctx, account_id, error, reason, cap=timedelta(hours=1))


@guarded(CAPTURE_ACCOUNT_INSIGHTS, max_tries=MAX_TRIES, record=_note_error, give_up=_gave_up)
async def capture_account_insights(ctx: Context, account_id: int, due_epoch: int) -> str:
    """One run: the closed days due, then the demographics once a day."""
    engine: Engine = ctx["engine"]
    account = await in_thread(ctx, account_credentials, engine, account_id)
    if account is None or account.state != "active":
        return "skipped: no usable Instagram token"
    now = utcnow()
    margin = timedelta(seconds=ctx["settings"].story_final_margin_seconds)
    final = await in_thread(
        ctx, next_final_due, engine, account_id=account_id, until=now + FINAL_YIELD, margin=margin
    )
    if final is not None:  # the story's last chance first; this run waits a little
        later = max(final, now) + timedelta(minutes=1)
        await in_thread(ctx, postpone, engine, account_id=account_id, until=later)
        return f"deferred to {later:%H:%M:%S} for a story final"
    days = await _due_days(ctx, account, now)
    got = Collected()
    for window in days:
        await _day(ctx, account, window, got)
        if got.stop is not None:
            break
    demographics = Collected()
    if got.stop is None:
        await _demographics(ctx, account, now, demographics)
    slot = f"run:{due_epoch}:{job_try(ctx)}"
    if got.rows:
        await in_thread(ctx, _store, engine, account, INSIGHTS, slot, got)
    if demographics.rows:
        day_slot = f"day:{now.date().isoformat()}"
        await in_thread(ctx, _store, engine, account, DEMOGRAPHICS, day_slot, demographics)
    stop = got.stop or demographics.stop
    if stop is None:
        next_at = await _next_run(ctx, account, utcnow())
        await in_thread(
            ctx, record_success, engine, account_id=account_id, side=IG_INSIGHTS, next_at=next_at
        )
        return f"{len(days)} days, {len(got.rows)} values; next run at {next_at:%Y-%m-%d %H:%M}"
    return f"stopped: {stop}; {await _failed(ctx, account, stop)}"


async def _due_days(ctx: Context, account: Account, now: datetime) -> list[Window]:
    start = now - timedelta(days=HORIZON_DAYS + 2)
    stored = await in_thread(
        ctx, stored_days, ctx["engine"], ig_user_id=account.ig_user_id, since=start
    )
    return due_windows(now, stored, horizon=HORIZON_DAYS, settle=SETTLE, limit=DAYS_PER_RUN)


async def _next_run(ctx: Context, account: Account, now: datetime) -> datetime:
    """A minute away while days are still missing, else after the next Pacific midnight."""
    if await _due_days(ctx, account, now):
        return now + CATCH_UP_GAP
    return next_midnight(now) + AFTER_MIDNIGHT


def next_midnight(now: datetime) -> datetime:
    """The Pacific midnight that ends the Meta day holding `now` (a day is 23 to 25 h long)."""
    return day_start(day_start(now) + timedelta(hours=26))


async def _day(ctx: Context, account: Account, window: Window, got: Collected) -> None:
    """The day's calls into `got`, every row dated by the day's end; a day whose calls did
    not all answer is left out whole (asked again next run)."""
    day = Collected()
    for call in DAY_CALLS:
        await _ask(ctx, account, call, day, window)
        if day.stop is not None:
            got.stop = day.stop
            return
    got.rows.extend(day.rows)
    got.raw[window.since.date().isoformat()] = day.raw


async def _demographics(ctx: Context, account: Account, now: datetime, got: Collected) -> None:
    last = await in_thread(ctx, last_demographics_at, ctx["engine"], ig_user_id=account.ig_user_id)
    if last is not None and last.date() == now.date():
        return
    for call in DEMOGRAPHIC_CALLS:
        await _ask(ctx, account, call, got, None)
        if got.stop is not None:
            got.rows.clear()  # a partial set of breakdowns is not kept
            return


async def _ask(
    ctx: Context, account: Account, call: AccountCall, got: Collected, window: Window | None
) -> None:
    """One call, without the metrics Meta refused for the account; one it refuses now is
    recorded and the call asked again without it. Those get `not_supported` rows."""
    assert account.id is not None
    skip = await in_thread(
        ctx, unavailable_metrics, ctx["engine"], platform=PLATFORM, account_id=account.id,
        now=utcnow(),
    )  # fmt: skip
    metrics = tuple(m for m in call.metrics if m not in skip)
    while metrics:
        span = {k: str(v) for k, v in window.params.items()} if window else {}
        params = call.params(metrics) | span
        try:
            body = await ctx["graph"].account_insights(account, params, metrics)
        except InvalidMetric as exc:
            named = [m for m in exc.metrics if m in metrics]
            if not named:
                got.stop = exc
                return
            await _refused(ctx, account.id, named, str(exc))
            metrics = tuple(m for m in metrics if m not in named)
            continue
        except MetaError as exc:
            got.stop = exc
            return
        got.rows.extend(account_rows(body, call, metrics, window.until if window else None))
        got.raw[call.name] = {k: v for k, v in body.items() if k != "paging"}
        break
    refused = [m for m in call.metrics if m not in metrics]
    end = window.until if window else None
    got.rows.extend(MetricRow(m, None, call.breakdown, None, end, NOT_SUPPORTED) for m in refused)


async def _refused(ctx: Context, account_id: int, metrics: list[str], reason: str) -> None:
    fresh = await in_thread(
        ctx, mark_unavailable, ctx["engine"], platform=PLATFORM, account_id=account_id,
        metrics=metrics, reason=reason, retry_at=utcnow() + REFUSED_RETRY,
    )  # fmt: skip
    for metric in fresh:
        log.warning(
            "account %s: Meta refused the account metric %s: %s",
            account_id,
            metric,
            reason,
            extra={"account_id": account_id},
        )


def _store(engine: Engine, account: Account, kind: str, slot: str, got: Collected) -> bool:
    assert account.id is not None
    with session_scope(engine) as session:
        _, created = record_snapshot(
            session=session,
            subject=Subject(account.id, PLATFORM, SUBJECT, account.ig_user_id, kind),
            slot=slot,
            source="api",
            metrics=got.rows,
            raw=got.raw,
        )
    return created


async def _failed(ctx: Context, account: Account, exc: MetaError) -> str:
    """When the run that `exc` stopped is due again (what was complete is kept)."""
    assert account.id is not None
    engine: Engine = ctx["engine"]
    error = str(exc)
    if isinstance(exc, Transient) and job_try(ctx) < MAX_TRIES:
        await _note_error(ctx, error, account.id, 0)
        await retry(ctx, CAPTURE_ACCOUNT_INSIGHTS, retry_delay(job_try(ctx)), error)
    await count(ctx, CAPTURE_ACCOUNT_INSIGHTS, GAVE_UP)
    if isinstance(exc, Throttled):
        wait = timedelta(seconds=max(exc.retry_after, 1.0))
        await in_thread(
            ctx, record_error, engine, account_id=account.id, side=IG_INSIGHTS, error=error,
            next_at=utcnow() + wait,
        )  # fmt: skip
        return f"next run in {human(wait)}"
    if isinstance(exc, AuthError):
        if await in_thread(ctx, flag_reauth, engine, account_id=account.id, reason=error):
            log.warning(
                "account %s needs re-authorisation: %s",
                account.id,
                exc,
                extra={"account_id": account.id},
            )
        return "the token needs re-authorisation"
    if isinstance(exc, Transient):
        return await _back_off(
            ctx, account.id, error, f"Meta kept failing ({error})", cap=timedelta(hours=1)
        )
    return await _back_off(ctx, account.id, error, rejection(exc, INSTAGRAM), cap=LONGEST_WAIT)


async def _back_off(
    ctx: Context, account_id: int, error: str, reason: str, *, cap: timedelta
) -> str:
    wait = await in_thread(
        ctx, record_failure, ctx["engine"], account_id=account_id, side=IG_INSIGHTS,
        error=error, reason=reason, cap=cap,
    )  # fmt: skip
    log.warning(
        "account %s: %s; next account insights run in %s",
        account_id,
        reason,
        human(wait),
        extra={"account_id": account_id},
    )
    return f"next run in {human(wait)}"
