"""Turning an archived delivery into snapshots: idempotent, one transaction per delivery."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from typing import Any

import sqlalchemy as sa
from arq import Retry
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.accounts import Account
from models.db import session_scope
from models.deliveries import (
    FAILED,
    IGNORED,
    PROCESSED,
    UNPARSEABLE,
    UNROUTED,
    WebhookDelivery,
)
from models.errors import NotFoundError, StoreUnavailable
from models.recording import BELOW_THRESHOLD, MetricRow, Subject, record_snapshot
from models.snapshots import Media
from models.types import utcnow
from workers.envelope import Change, UnparseableDelivery, parse_body

log = logging.getLogger(__name__)
DONE = (PROCESSED, IGNORED, UNPARSEABLE)


def story_metric_rows(value: dict[str, Any]) -> list[MetricRow]:
    """One row per numeric key; Meta's -1 means "fewer than 5" and is never a count."""
    rows = []
    for key, raw in value.items():
        if key == "media_id" or isinstance(raw, bool) or not isinstance(raw, int | float):
            continue
        if raw == -1:
            rows.append(MetricRow(metric=key, value=None, flag=BELOW_THRESHOLD))
        else:
            rows.append(MetricRow(metric=key, value=float(raw)))
    return rows


def _upsert_story(session: Session, account: Account, media_id: str) -> None:
    stmt = select(Media).where(col(Media.platform) == "instagram", col(Media.media_id) == media_id)
    if session.exec(stmt).first() is None:
        assert account.id is not None
        with session.begin_nested():
            session.add(
                Media(
                    account_id=account.id,
                    platform="instagram",
                    subject_type="story",
                    media_id=media_id,
                )
            )


def _story_insights(session: Session, delivery_id: int, change: Change) -> str | None:
    """Record the webhook version of a story; return a reason when it cannot be routed."""
    account = session.exec(
        select(Account).where(col(Account.ig_user_id) == change.entry_id)
    ).first()
    if account is None or account.id is None:
        return f"no account with ig_user_id {change.entry_id}"
    media_id = str(change.value.get("media_id", ""))
    if not media_id:
        return "story_insights without media_id"
    _upsert_story(session, account, media_id)
    record_snapshot(
        session=session,
        subject=Subject(account.id, "instagram", "story", media_id),
        slot="webhook",  # one webhook version per story, whatever body carried it
        source="webhook",
        metrics=story_metric_rows(change.value),
        raw=change.value,
        delivery_id=delivery_id,
    )
    return None


def _apply(session: Session, delivery: WebhookDelivery) -> tuple[str, str]:
    assert delivery.id is not None
    try:
        changes = parse_body(delivery.body)
    except UnparseableDelivery as exc:
        return UNPARSEABLE, str(exc)
    routed, unrouted, fields = 0, [], sorted({c.field for c in changes})
    for change in changes:
        if change.object == "instagram" and change.field == "story_insights":
            reason = _story_insights(session, delivery.id, change)
            routed += reason is None
            if reason:
                unrouted.append(reason)
    summary = f"fields: {', '.join(fields) or '-'}"
    if unrouted:
        return UNROUTED, f"{summary}; " + "; ".join(sorted(set(unrouted)))
    return (PROCESSED if routed else IGNORED), summary


def process_delivery_sync(*, engine: Engine, delivery_id: int) -> str:
    """Process one delivery; running it again never makes a second snapshot version."""
    try:
        with session_scope(engine) as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                msg = f"no webhook delivery with id {delivery_id}"
                raise NotFoundError(msg)
            if delivery.status in DONE:
                return delivery.status
            status, summary = _apply(session, delivery)
            delivery.status, delivery.summary = status, summary
            delivery.processed_at, delivery.attempts = utcnow(), delivery.attempts + 1
            delivery.error = summary if status == UNPARSEABLE else None
            delivery.traceback = None
            return status
    except (NotFoundError, StoreUnavailable):
        raise
    except Exception as exc:
        _record_failure(engine, delivery_id, exc)
        raise


def _record_failure(engine: Engine, delivery_id: int, exc: BaseException) -> None:
    table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.update(table)
        .where(table.c.id == delivery_id)
        .values(
            status=FAILED,
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
            attempts=table.c.attempts + 1,
        )
    )
    with engine.begin() as conn:
        conn.execute(stmt)


async def process_delivery(ctx: dict[str, Any], delivery_id: int) -> str:
    """arq job: run the processing in a thread; a database outage retries with back-off."""
    started, attempt = time.monotonic(), ctx.get("job_try", 1)
    try:
        status = await asyncio.to_thread(
            process_delivery_sync, engine=ctx["engine"], delivery_id=delivery_id
        )
    except StoreUnavailable as exc:
        raise Retry(defer=min(60, 2**attempt)) from exc
    log.info(
        "delivery %s -> %s in %.1f ms (try %s)",
        delivery_id,
        status,
        (time.monotonic() - started) * 1000,
        attempt,
        extra={"delivery_id": delivery_id},
    )
    return status
