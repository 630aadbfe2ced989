"""Every failure branch of `process_delivery`, one try at a time, on both databases and real
Redis: a failure kept on the row and retried, then left `failed` for `archiver replay`; a
database outage retried, then left pending for the sweeper; a row that does not exist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from arq import Retry
from arq.connections import RedisSettings, create_pool
from sqlalchemy.engine import Engine

from core.config import Settings
from models.db import create_db_engine
from tests.conftest import make_settings
from tests.servers import free_port
from tests.test_deliveries import (
    add_account,
    add_delivery,
    delivery_row,
    failing_metric_inserts,
    story_body,
)
from tests.workers_harness import job_failures
from workers.runtime.context import Context
from workers.webhooks.process import DELIVERY_MAX_TRIES, process_delivery


@asynccontextmanager
async def delivery_ctx(engine: Engine, redis_url: str) -> AsyncIterator[Context]:
    """What the deliveries lane gives the job: the engine and Redis, at try 1."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        yield {"engine": engine, "redis": pool, "job_id": "event:test", "job_try": 1}
    finally:
        await pool.aclose()


@pytest.mark.anyio
async def test_a_delivery_that_raises_is_retried_then_left_failed_for_replay(
    engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The error and traceback are kept on the row at every try; arq retries (1 s, 2 s ...);
    the last try gives up and leaves the row `failed`, logged with its traceback."""
    add_account(engine)
    delivery = add_delivery(engine, story_body())
    async with delivery_ctx(engine, settings.redis_url or "") as ctx:
        with failing_metric_inserts(engine):
            with pytest.raises(Retry) as first:
                await process_delivery(ctx, delivery)
            ctx["job_try"] = DELIVERY_MAX_TRIES
            outcome = await process_delivery(ctx, delivery)
    row = delivery_row(engine, delivery)
    assert first.value.defer_score == 1000
    assert outcome.startswith("gave up:")
    assert "injected fault" in outcome
    assert "INSERT INTO" not in outcome  # the driver's message, not SQLAlchemy's statement
    assert (row.status, row.attempts) == ("failed", 2)
    assert (row.traceback or "").startswith("Traceback (most recent call last)")
    for first_or_last in ("on try 1, will retry", f"on try {DELIVERY_MAX_TRIES}, giving up"):
        assert f"{first_or_last}\nTraceback (most recent call last)" in caplog.text
    assert job_failures(settings.redis_url or "") == {
        "process_delivery|retry": 1,
        "process_delivery|gave_up": 1,
    }


@pytest.mark.anyio
async def test_a_delivery_during_a_database_outage_is_retried_then_left_for_the_sweeper(
    redis_url: str,
) -> None:
    """StoreUnavailable: retried with back-off; after the last try the row (unreachable) is
    still pending, so the sweeper enqueues it again once the database is back."""
    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    engine = create_db_engine(make_settings(down, redis_url).database_url)
    try:
        async with delivery_ctx(engine, redis_url) as ctx:
            with pytest.raises(Retry):
                await process_delivery(ctx, 1)
            ctx["job_try"] = DELIVERY_MAX_TRIES
            outcome = await process_delivery(ctx, 1)
    finally:
        engine.dispose()
    assert outcome.startswith("gave up: StoreUnavailable: database unavailable")
    assert job_failures(redis_url) == {"process_delivery|retry": 1, "process_delivery|gave_up": 1}


@pytest.mark.anyio
async def test_a_delivery_that_does_not_exist_is_given_up_at_once(
    engine: Engine, redis_url: str
) -> None:
    """No row (deleted since it was enqueued): nothing to retry."""
    async with delivery_ctx(engine, redis_url) as ctx:
        assert await process_delivery(ctx, 424242) == "not found"
    assert job_failures(redis_url) == {"process_delivery|gave_up": 1}
