"""Processing deliveries with the real arq worker against real Redis and both databases."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import redis
import sqlalchemy as sa
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.accounts import Account
from models.config import Settings
from models.deliveries import WebhookDelivery
from models.outbox import enqueue_deliveries, sweep_stale
from models.snapshots import Snapshot
from workers.deliveries import process_delivery_sync
from workers.main import build_worker

IG = "17841405309211844"


def story_body(media_id: str = "18023345989012587", time: int = 1547687043, **extra: Any) -> bytes:
    value = {
        "media_id": media_id,
        "exits": 1,
        "replies": -1,
        "reach": 17,
        "taps_forward": 12,
        "taps_back": 0,
        "impressions": 28,
        **extra,
    }
    doc = [
        {
            "entry": [
                {"changes": [{"field": "story_insights", "value": value}], "id": IG, "time": time}
            ],
            "object": "instagram",
        }
    ]
    return json.dumps(doc).encode()


def add_delivery(engine: Engine, body: bytes) -> int:
    with Session(engine) as session:
        row = WebhookDelivery(
            platform="instagram", body=body, body_sha256=hashlib.sha256(body).hexdigest()
        )
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id


def add_account(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Account(name="shop", ig_user_id=IG, ig_token="EAAtoken-0123456789"))
        session.commit()


def status_of(engine: Engine, delivery_id: int) -> WebhookDelivery:
    with Session(engine) as session:
        row = session.get(WebhookDelivery, delivery_id)
        assert row is not None
        return row


def history(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM metric_history ORDER BY metric"))
        return [dict(r._mapping) for r in rows]


async def run_burst(settings: Settings, ids: list[int], *, twice: bool = False) -> int:
    pool = ArqRedis(connection_pool=ConnectionPool.from_url(settings.redis_url or ""))
    await enqueue_deliveries(pool, ids)
    if twice:
        await enqueue_deliveries(pool, ids)
    worker = build_worker(settings, burst=True, poll_delay=0, redis_pool=pool, handle_signals=False)
    try:
        await worker.main()
        return worker.jobs_complete
    finally:
        await worker.close()
        await pool.aclose()
        await pool.connection_pool.disconnect()
        await pool.connection_pool.disconnect()


def test_story_insights_becomes_a_webhook_version(engine: Engine, settings: Settings) -> None:
    """A story_insights delivery becomes version 1 with one metric row per value."""
    add_account(engine)
    delivery = add_delivery(engine, story_body(custom_new=3, note="kept"))
    assert asyncio.run(run_burst(settings, [delivery])) >= 1
    assert status_of(engine, delivery).status == "processed"
    rows = {r["metric"]: r for r in history(engine)}
    assert set(rows) == {
        "exits",
        "replies",
        "reach",
        "taps_forward",
        "taps_back",
        "impressions",
        "custom_new",
    }
    assert rows["reach"]["value"] == 17
    assert (rows["replies"]["value"], rows["replies"]["flag"]) == (None, "below_threshold")
    assert {(r["version"], r["source"], r["subject_type"]) for r in rows.values()} == {
        (1, "webhook", "story")
    }
    with Session(engine) as session:
        (snap,) = session.exec(select(Snapshot)).all()
        assert snap.raw["note"] == "kept"


def test_duplicate_enqueue_and_rerun_make_one_version(engine: Engine, settings: Settings) -> None:
    """The same job enqueued twice runs once; processing again changes nothing."""
    add_account(engine)
    delivery = add_delivery(engine, story_body())
    asyncio.run(run_burst(settings, [delivery], twice=True))
    assert status_of(engine, delivery).attempts == 1  # one run, not two
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "processed"
    with Session(engine) as session:
        assert len(session.exec(select(Snapshot)).all()) == 1


def test_retried_body_for_same_story_is_one_version(engine: Engine) -> None:
    """A retry with another entry.time (another body) adds no second webhook version."""
    add_account(engine)
    first = add_delivery(engine, story_body(time=1))
    second = add_delivery(engine, story_body(time=2))
    assert process_delivery_sync(engine=engine, delivery_id=first) == "processed"
    assert process_delivery_sync(engine=engine, delivery_id=second) == "processed"
    assert {r["version"] for r in history(engine)} == {1}


def test_unknown_account_is_unrouted_until_replayed(engine: Engine) -> None:
    """A delivery for an unregistered account waits as unrouted, then processes."""
    delivery = add_delivery(engine, story_body())
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "unrouted"
    assert IG in (status_of(engine, delivery).summary or "")
    add_account(engine)
    assert process_delivery_sync(engine=engine, delivery_id=delivery) == "processed"
    assert len(history(engine)) == 6


def test_other_fields_are_ignored_and_bad_json_unparseable(engine: Engine) -> None:
    """Comments are archived as ignored; a non-JSON body as unparseable with its error."""
    body = json.dumps(
        {
            "object": "instagram",
            "entry": [
                {"id": IG, "time": 1, "changes": [{"field": "comments", "value": {"id": "1"}}]}
            ],
        }
    )
    ignored = add_delivery(engine, body.encode())
    broken = add_delivery(engine, b"{not json")
    assert process_delivery_sync(engine=engine, delivery_id=ignored) == "ignored"
    assert process_delivery_sync(engine=engine, delivery_id=broken) == "unparseable"
    assert "not JSON" in (status_of(engine, broken).error or "")
    assert history(engine) == []


def test_sweeper_reenqueues_after_redis_flush(engine: Engine, settings: Settings) -> None:
    """Deliveries left pending after a Redis flush are swept back and processed."""
    add_account(engine)
    delivery = add_delivery(engine, story_body())

    async def scenario() -> int:
        pool = ArqRedis(connection_pool=ConnectionPool.from_url(settings.redis_url or ""))
        await enqueue_deliveries(pool, [delivery])
        await pool.flushdb()
        from datetime import timedelta

        moved = await sweep_stale(engine, pool, after=timedelta(seconds=0))
        await pool.aclose()
        await pool.connection_pool.disconnect()
        await pool.connection_pool.disconnect()
        return moved

    assert asyncio.run(scenario()) == 1
    assert redis.Redis.from_url(settings.redis_url or "").zcard("arq:queue") == 1
    asyncio.run(run_burst(settings, []))
    assert status_of(engine, delivery).status == "processed"
