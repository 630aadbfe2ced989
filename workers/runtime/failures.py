"""How a job ends when something failed: counted, logged, retried with back-off, or given up so
that its schedule moves on. Never a stall: the workers keep no arq results (workers.main), so
whatever a job's outcome, the next scheduler tick can enqueue its work again.

`guarded` wraps a job so that anything it did not plan for (a KeyError on an odd answer, a bug,
a database fault) is handled as a transient failure: logged once with its scrubbed traceback,
kept as the row's last error, retried with arq's Retry (1 s, 2 s, 4 s ... 60 s) and, on the
last try, handed to the job's own `give_up`, which moves the schedule on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar, cast

from arq import Retry
from redis.exceptions import RedisError

from core.redaction import scrub
from reports.figures import JOB_FAILURES_KEY
from reports.worker_metrics import OK
from store.backoff import INSTAGRAM, THREADS
from workers.meta.api_errors import MetaError, PermissionDenied
from workers.runtime.context import Context

log = logging.getLogger(__name__)

RETRY = "retry"
GAVE_UP = "gave_up"
RETRY_CAP_SECONDS = 60.0
_ERROR_CHARS = 2000
# What each side's polls need (https://developers.facebook.com/docs/instagram-platform/
# instagram-graph-api/reference/ig-user/stories, https://developers.facebook.com/docs/threads/insights).
_PERMISSIONS = {
    INSTAGRAM: "instagram_basic, instagram_manage_insights",
    THREADS: "threads_basic, threads_manage_insights",
}
_ACCOUNT_IDS = {INSTAGRAM: "ig-user-id", THREADS: "threads-user-id"}

J = TypeVar("J", bound=Callable[..., Coroutine[Any, Any, str]])
# (ctx, error, *the job's arguments): keep the error on the row / move the schedule on.
Record = Callable[..., Awaitable[None]]
GiveUp = Callable[..., Awaitable[str]]


def job_try(ctx: Context) -> int:
    return int(ctx.get("job_try") or 1)


def job_fields(ctx: Context, **more: Any) -> dict[str, Any]:
    """The ids a job's log lines carry as fields: job_id, job_try and, once the job knows
    them, account_id and media_id (LOG_FORMAT=json prints them)."""
    fields: dict[str, Any] = {"job_id": ctx.get("job_id"), "job_try": job_try(ctx)}
    if "account_id" in ctx:
        fields["account_id"] = ctx["account_id"]
    if "media_id" in ctx:
        fields["media_id"] = ctx["media_id"]
    return fields | more


def note_subject(ctx: Context, args: tuple[Any, ...]) -> None:
    """Note a job's subject from its first argument: an account id (int) or a media id."""
    if args and isinstance(args[0], int):
        ctx["account_id"] = args[0]
    elif args and isinstance(args[0], str):
        ctx["media_id"] = args[0]


def retry_delay(attempt: int) -> float:
    """Seconds before the try after `attempt`: 1, 2, 4 ... capped at a minute."""
    return float(min(RETRY_CAP_SECONDS, 2 ** max(0, attempt - 1)))


def describe(exc: BaseException) -> str:
    """`KeyError: 'data'`, scrubbed of tokens and cut to what a row keeps; a database error
    says what the driver said, without SQLAlchemy's statement and parameters."""
    detail = getattr(exc, "orig", None) or exc
    return scrub(f"{type(exc).__name__}: {detail}".strip())[:_ERROR_CHARS]


def rejection(exc: MetaError, side: str) -> str:
    """Why Meta refused an account's poll, for the operator who has to fix it."""
    if isinstance(exc, PermissionDenied):
        needs = _PERMISSIONS[side]
        return f"permission denied ({exc}): the token lacks a permission the poll needs ({needs})"
    if exc.code == 100:
        what = _ACCOUNT_IDS[side]
        return f"Meta rejected the account ({exc}): check its {what} and that the token is its own"
    return f"Meta rejected the request ({exc})"


async def count(ctx: Context, function: str, outcome: str) -> None:
    """One run of `function` ended with `outcome` (ok, retry, gave_up): in the process's
    metrics, and a failure in JOB_FAILURES_KEY too; Redis trouble must not change the job's
    outcome, so it is let go."""
    ctx["outcome"] = outcome
    metrics = ctx.get("metrics")
    if metrics is not None:
        metrics.job(function, outcome)
    redis = ctx.get("redis")
    if redis is None or outcome == OK:
        return
    with contextlib.suppress(RedisError, OSError):
        await redis.hincrby(JOB_FAILURES_KEY, f"{function}|{outcome}", 1)  # type: ignore[misc]


async def retry(ctx: Context, function: str, delay: float, why: str) -> NoReturn:
    """Count the failure and hand the job back to arq, due again in `delay` seconds."""
    await count(ctx, function, RETRY)
    log.info(
        "%s: try %d failed (%s); retry in %.1f s",
        ctx.get("job_id"),
        job_try(ctx),
        why,
        delay,
        extra=job_fields(ctx),
    )
    raise Retry(defer=max(delay, 0.5))


def guarded(function: str, *, max_tries: int, record: Record, give_up: GiveUp) -> Callable[[J], J]:
    """Decorate a job: an exception it raises (but arq's Retry) is retried, then given up.
    `record` and `give_up` are called as (ctx, error, *the job's arguments)."""

    def decorate(job: J) -> J:
        @functools.wraps(job)
        async def run(ctx: Context, *args: Any, **kwargs: Any) -> str:
            started = time.monotonic()
            note_subject(ctx, args)
            ctx.pop("outcome", None)
            try:
                result = await job(ctx, *args, **kwargs)
            except Retry:
                raise
            except Exception as exc:  # anything unplanned: see the module docstring
                error = describe(exc)
                log_unexpected(ctx, exc, started, last=job_try(ctx) >= max_tries)
                await _best_effort(record(ctx, error, *args, **kwargs), ctx)
                if job_try(ctx) < max_tries:
                    await retry(ctx, function, retry_delay(job_try(ctx)), error)
                await count(ctx, function, GAVE_UP)
                outcome = await give_up(ctx, error, *args, **kwargs)
                log.warning(
                    "%s: gave up on try %d: %s",
                    ctx.get("job_id"),
                    job_try(ctx),
                    outcome,
                    extra=job_fields(ctx),
                )
                return outcome
            if "outcome" not in ctx:  # the job did not count a failure of its own
                await count(ctx, function, OK)
            return result

        return cast(J, run)

    return decorate


def trace_of(exc: BaseException) -> str:
    """The traceback as text, scrubbed like everything else we log or store."""
    return scrub("".join(traceback.format_exception(exc)))


def log_unexpected(ctx: Context, exc: Exception, started: float, *, last: bool) -> None:
    """One ERROR line; with the traceback on the first and the last try (not on every one of
    a thousand jobs' eight tries)."""
    attempt = job_try(ctx)
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    extra = job_fields(ctx, duration_ms=duration_ms)
    trace = f"\n{trace_of(exc)}" if attempt == 1 or last else ""
    log.error(
        "%s: unexpected %s on try %d, %s%s",
        ctx.get("job_id"),
        describe(exc),
        attempt,
        "giving up" if last else "will retry",
        trace,
        extra=extra,
    )


async def _best_effort(recording: Awaitable[None], ctx: Context) -> None:
    """Keeping the error must not turn a retry into a crash (the database may be the fault)."""
    try:
        await recording
    except Exception as exc:  # the retry or give-up below matters more than the record
        log.warning(
            "%s: could not record the error: %s",
            ctx.get("job_id"),
            describe(exc),
            extra=job_fields(ctx),
        )
