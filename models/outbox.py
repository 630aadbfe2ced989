"""Moving committed deliveries into arq: the receiver's relay and the workers' sweeper.

Nothing here trusts Redis to keep state: the database row says what is still pending, and a
re-enqueue under the same job id is harmless.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa
from arq.connections import ArqRedis
from sqlalchemy.engine import Engine

from models.deliveries import ENQUEUED, RECEIVED, WebhookDelivery
from models.jobs import PROCESS_DELIVERY, delivery_job_id
from models.types import utcnow

_table = WebhookDelivery.__table__  # type: ignore[attr-defined]


def _pending_ids(
    engine: Engine, *, states: tuple[str, ...], older_than: timedelta | None, limit: int
) -> list[int]:
    stmt = sa.select(_table.c.id).where(_table.c.status.in_(states))
    if older_than is not None:
        cutoff = utcnow() - older_than
        stmt = stmt.where(sa.func.coalesce(_table.c.enqueued_at, _table.c.received_at) < cutoff)
    stmt = stmt.order_by(_table.c.id).limit(limit)
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(stmt)]


def _mark_enqueued(engine: Engine, ids: list[int]) -> None:
    stmt = (
        sa.update(_table)
        .where(_table.c.id.in_(ids), _table.c.status.in_((RECEIVED, ENQUEUED)))
        .values(status=ENQUEUED, enqueued_at=utcnow())
    )
    with engine.begin() as conn:
        conn.execute(stmt)


async def enqueue_deliveries(redis: ArqRedis, ids: list[int]) -> None:
    """Enqueue one job per delivery; ids already queued (or just finished) are skipped by arq."""
    await asyncio.gather(
        *(
            redis.enqueue_job(PROCESS_DELIVERY, delivery_id, _job_id=delivery_job_id(delivery_id))
            for delivery_id in ids
        )
    )


async def relay_pending(
    engine: Engine,
    redis: ArqRedis,
    *,
    states: tuple[str, ...] = (RECEIVED,),
    older_than: timedelta | None = None,
    limit: int = 500,
) -> int:
    """Enqueue up to `limit` pending deliveries and mark them; return how many were moved.

    Redis errors propagate, leaving the rows as they were for the next pass.
    """
    ids = await asyncio.to_thread(
        _pending_ids, engine, states=states, older_than=older_than, limit=limit
    )
    if not ids:
        return 0
    await enqueue_deliveries(redis, ids)
    await asyncio.to_thread(_mark_enqueued, engine, ids)
    return len(ids)


async def sweep_stale(
    engine: Engine, redis: ArqRedis, *, after: timedelta, limit: int = 500
) -> int:
    """Re-enqueue deliveries pending longer than `after` (a Redis flush, a crashed relay)."""
    return await relay_pending(
        engine, redis, states=(RECEIVED, ENQUEUED), older_than=after, limit=limit
    )
