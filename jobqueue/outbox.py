"""Moving committed deliveries into arq: the receiver's relay and the workers' sweeper.

Nothing here trusts Redis to keep state: the database row says what is still pending, and a
re-enqueue under the same job id is harmless.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import sqlalchemy as sa
from arq.connections import ArqRedis
from sqlalchemy.engine import Engine

from jobqueue.arq_internals import expires_extra_ms, job_key_prefix, serialize_job
from jobqueue.names import DELIVERIES_QUEUE, PROCESS_DELIVERY, delivery_job_id
from models.deliveries import ENQUEUED, RECEIVED, WebhookDelivery
from models.tables import table_of
from models.types import utcnow

_table = table_of(WebhookDelivery)


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


def mark_enqueued(engine: Engine, ids: list[int]) -> None:
    """Blocking: `received` (or re-enqueued `enqueued`) rows become `enqueued`; a row a worker
    already finished keeps its final state."""
    stmt = (
        sa.update(_table)
        .where(_table.c.id.in_(ids), _table.c.status.in_((RECEIVED, ENQUEUED)))
        .values(status=ENQUEUED, enqueued_at=utcnow())
    )
    with engine.begin() as conn:
        conn.execute(stmt)


# arq's enqueue, for many jobs in one command. Each job as arq writes it: its key under SET NX
# (a job already queued or running keeps its key) and its id in the queue under ZADD NX. A job
# that finished and is enqueued again just finds its delivery processed.
# KEYS: the queue; ARGV: job key prefix, score (ms), expiry (ms), then job id, job pairs.
_ENQUEUE_LUA = """
local queue, prefix, score, px = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV, 2 do
  redis.call('SET', prefix .. ARGV[i], ARGV[i + 1], 'PX', px, 'NX')
  redis.call('ZADD', queue, 'NX', score, ARGV[i])
end
return (#ARGV - 3) / 2
"""


async def enqueue_deliveries(redis: ArqRedis, ids: list[int]) -> None:
    """Enqueue one arq job per delivery, in the deliveries' own queue, in a single Redis
    command (a script).

    arq's own enqueue_job costs three round trips per job, and a pipeline of SET and ZADD still
    cost the receiver ~65 us of CPU per job to encode and parse; the script takes ~10 us. The
    script is loaded on first use and again after a Redis restart (redis-py retries NOSCRIPT).
    """
    if not ids:
        return
    now_ms = int(time.time() * 1000)
    args: list[str | bytes | int] = [job_key_prefix, now_ms, expires_extra_ms]
    for delivery_id in ids:
        args.append(delivery_job_id(delivery_id))
        args.append(serialize_job(PROCESS_DELIVERY, (delivery_id,), {}, None, now_ms))
    await redis.register_script(_ENQUEUE_LUA)(keys=[DELIVERIES_QUEUE], args=args)


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
    await asyncio.to_thread(mark_enqueued, engine, ids)
    return len(ids)


async def sweep_stale(
    engine: Engine, redis: ArqRedis, *, after: timedelta, limit: int = 500
) -> int:
    """Re-enqueue deliveries pending longer than `after` (a Redis flush, a crashed relay)."""
    return await relay_pending(
        engine, redis, states=(RECEIVED, ENQUEUED), older_than=after, limit=limit
    )
