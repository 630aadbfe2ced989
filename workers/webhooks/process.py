"""`process_delivery`: an archived delivery into work, idempotent, one transaction each.

The receiver stored the raw body before answering Meta (models/deliveries.py); this is the
second half: parse it as the platform of its route (workers.webhooks.envelope), hand each
change to its platform's module (story_changes, threads_changes), and set the delivery's
final status and summary. Meta delivers at least once
(https://developers.facebook.com/docs/graph-api/webhooks/getting-started), so nothing here
counts on seeing a change once, and a delivery already in a final state is left as it is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlmodel import Session

from core.errors import NotFoundError, StoreUnavailable
from jobqueue.names import PROCESS_DELIVERY
from models.db import session_scope
from models.deliveries import (
    FAILED,
    IGNORED,
    PROCESSED,
    REJECTED,
    UNPARSEABLE,
    UNROUTED,
    WebhookDelivery,
)
from models.tables import table_of
from models.types import utcnow
from reports.worker_metrics import OK
from workers.runtime.context import Context, in_thread
from workers.runtime.failures import (
    GAVE_UP,
    count,
    describe,
    job_try,
    log_unexpected,
    retry,
    retry_delay,
    trace_of,
)
from workers.webhooks.envelope import (
    Change,
    MisroutedDelivery,
    UnparseableDelivery,
    parse_body,
)
from workers.webhooks.story_changes import ALREADY, RECORDED, apply_story_change, is_story_change
from workers.webhooks.threads_changes import apply_post_change, is_post_change

log = logging.getLogger(__name__)

DONE = (PROCESSED, IGNORED, UNPARSEABLE, REJECTED)  # final: processing again changes nothing
DELIVERY_MAX_TRIES = 6  # 1 + 2 + 4 + 8 + 16 s of retries: a database restart, a lock storm
_ERROR_CHARS = 2000
_REASON_CHARS = 200  # of the database's message for a value it refused


@dataclass
class Outcome:
    """What the changes of one delivery came to; decides its status and summary."""

    fields: list[str] = field(default_factory=list)
    recorded: int = 0  # new webhook versions
    threads: dict[str, int] = field(default_factory=dict)  # Threads post changes acted on
    already: int = 0  # stories whose webhook version existed (a Meta retry, a rerun)
    unrouted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.unrouted:
            return UNROUTED
        return PROCESSED if self.recorded or self.already or self.threads else IGNORED

    def summary(self) -> str:
        parts = [f"fields: {', '.join(sorted(set(self.fields))) or '-'}"]
        if self.recorded or self.already:
            parts.append(f"stories: {self.recorded} recorded, {self.already} already recorded")
        if self.threads:
            done = ", ".join(f"{n} {kind}" for kind, n in sorted(self.threads.items()))
            parts.append(f"threads posts: {done}")
        parts += sorted(set(self.unrouted)) + sorted(set(self.skipped))
        return "; ".join(parts)


def process_delivery_sync(*, engine: Engine, delivery_id: int) -> str:
    """Process one delivery and return its status; a rerun never adds a snapshot version.

    A failure is written on the row (status `failed`, error, traceback) in a transaction of
    its own, then re-raised; StoreUnavailable means the database is the problem (and the row
    could not be written).
    """
    try:
        with session_scope(engine) as session:
            return _process(session, delivery_id)
    except NotFoundError:
        raise
    except DataError as exc:  # a value of the body the database refuses: final, like a parse
        return _record_unstorable(engine, delivery_id, exc)
    except Exception as exc:
        _record_failure(engine, delivery_id, exc)
        raise


def _process(session: Session, delivery_id: int) -> str:
    # FOR UPDATE serialises a replay with a worker on PostgreSQL; SQLite's BEGIN IMMEDIATE
    # (models/db.py) already lets one writer in at a time.
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None:
        msg = f"no webhook delivery with id {delivery_id}"
        raise NotFoundError(msg)
    if delivery.status in DONE:
        return delivery.status
    error = None
    try:
        changes = parse_body(delivery.body, platform=delivery.platform)
    except UnparseableDelivery as exc:
        status, summary, error = UNPARSEABLE, "body could not be parsed", str(exc)
    except MisroutedDelivery as exc:
        status, summary, error = REJECTED, f"not applied: {exc}", None
    else:
        outcome = Outcome()
        for change in changes:
            _apply(session, delivery_id, change, outcome)
        status, summary = outcome.status, outcome.summary()
    delivery.status, delivery.summary, delivery.error = status, summary, error
    delivery.processed_at, delivery.attempts = utcnow(), delivery.attempts + 1
    delivery.traceback = None
    return status


def _apply(session: Session, delivery_id: int, change: Change, outcome: Outcome) -> None:
    """Route one change; all but IG story_insights and Threads publish/delete is archived."""
    outcome.fields.append(change.field)
    if is_post_change(change):
        kind, note = apply_post_change(session, change)
        if kind in ("published", "left to the listing", "deleted"):
            outcome.threads[kind] = outcome.threads.get(kind, 0) + 1
        else:
            (outcome.unrouted if kind == "unrouted" else outcome.skipped).append(note)
    elif is_story_change(change):
        kind, note = apply_story_change(session, delivery_id, change)
        if kind == RECORDED:
            outcome.recorded += 1
        elif kind == ALREADY:
            outcome.already += 1
        else:
            (outcome.unrouted if kind == "unrouted" else outcome.skipped).append(note)


def _record_unstorable(engine: Engine, delivery_id: int, exc: DataError) -> str:
    """`unparseable`, with the database's one-line reason and none of the SQL or its
    parameters (body values). The transaction was rolled back, so nothing was applied."""
    lines = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
    error = f"a value of the body does not fit the archive: {lines[0][:_REASON_CHARS]}"
    recorded = _update_row(
        engine,
        delivery_id,
        status=UNPARSEABLE,
        summary="body could not be stored",
        error=error,
        traceback=None,
        processed_at=utcnow(),
    )
    if not recorded:
        msg = f"delivery {delivery_id} is unparseable but could not be marked so"
        raise StoreUnavailable(msg) from None
    return UNPARSEABLE


def _record_failure(engine: Engine, delivery_id: int, exc: BaseException) -> None:
    """Keep the error and its traceback on the row; best effort, the database may be down."""
    _update_row(
        engine,
        delivery_id,
        status=FAILED,
        error=f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS],
        traceback=trace_of(exc),
    )


def _update_row(engine: Engine, delivery_id: int, **values: Any) -> bool:
    """Write a final state in a transaction of its own; best effort, the database may be
    down (then the job's retry or the sweeper comes back to the row)."""
    table = table_of(WebhookDelivery)
    stmt = (
        sa.update(table)
        .where(table.c.id == delivery_id, table.c.status.not_in(DONE))
        .values(attempts=table.c.attempts + 1, **values)
    )
    try:
        with engine.begin() as conn:
            conn.execute(stmt)
    except SQLAlchemyError as record_exc:
        log.warning(
            "could not record the outcome of delivery %s: %s",
            delivery_id,
            type(record_exc).__name__,
            extra={"delivery_id": delivery_id},
        )
        return False
    return True


async def process_delivery(ctx: Context, delivery_id: int) -> str:
    """arq job (jobqueue.names.PROCESS_DELIVERY): the sync processing in a thread.

    Any failure (a database outage, an error kept on the row with its traceback) is retried
    with back-off, 1 s, 2 s, 4 s ...; after the last try the row is left as it is: `failed`
    ones wait for `archiver replay`, pending ones (the database was down) for the sweeper.
    """
    started, attempt = time.monotonic(), job_try(ctx)
    extra = {"delivery_id": delivery_id, "job_id": ctx.get("job_id"), "job_try": attempt}
    try:
        status = await in_thread(
            ctx, process_delivery_sync, engine=ctx["engine"], delivery_id=delivery_id
        )
    except NotFoundError:
        await count(ctx, PROCESS_DELIVERY, GAVE_UP)
        _log_job(logging.WARNING, "no such delivery", started, extra)
        return "not found"
    except Exception as exc:  # kept on the row by process_delivery_sync when it could be
        last, error = attempt >= DELIVERY_MAX_TRIES, describe(exc)
        if not isinstance(exc, StoreUnavailable):
            log_unexpected(ctx, exc, started, last=last)
        if not last:
            defer = retry_delay(attempt)
            _log_job(logging.WARNING, f"{error}; retry in {defer:.0f} s", started, extra)
            await retry(ctx, PROCESS_DELIVERY, defer, error)
        await count(ctx, PROCESS_DELIVERY, GAVE_UP)
        _log_job(logging.ERROR, f"gave up: {error}", started, extra)
        return f"gave up: {error}"
    await count(ctx, PROCESS_DELIVERY, OK)
    _log_job(logging.INFO, status, started, extra)
    return status


def _log_job(level: int, outcome: str, started: float, extra: dict[str, Any]) -> None:
    duration_ms = round((time.monotonic() - started) * 1000, 1)
    log.log(
        level,
        "delivery %s: %s in %.1f ms (try %s)",
        extra["delivery_id"],
        outcome,
        duration_ms,
        extra["job_try"],
        extra={**extra, "duration_ms": duration_ms, "outcome": outcome},
    )
