"""The relay over real HTTP and a real redis-server that is stopped and restarted mid-ingest,
on both databases, ending with the real arq worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
import sqlalchemy as sa
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix
from arq.jobs import Job
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.applications import Starlette

from core.config import Settings
from jobqueue.names import DELIVERIES_QUEUE, PROCESS_DELIVERY, delivery_job_id
from models.accounts import Account
from models.deliveries import ENQUEUED, PROCESSED, RECEIVED
from receiver.app import create_app
from receiver.signature import sign
from tests.conftest import APP_SECRET, make_settings
from tests.servers import PrivateRedis, ServerThread, wait_until
from workers.main import DELIVERIES, build_worker

IG = "17841405309211844"


def story(n: int) -> bytes:
    """A distinct signed-able story_insights delivery for the registered account."""
    value = {"media_id": f"1802334598{n:07d}", "reach": 17 + n, "impressions": 28 + n}
    entry = {"changes": [{"field": "story_insights", "value": value}], "id": IG, "time": 1}
    return json.dumps([{"entry": [entry], "object": "instagram"}]).encode()


def statuses(engine: Engine) -> dict[bytes, tuple[int, str]]:
    """Every stored delivery: body -> (id, status)."""
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT body, id, status FROM webhook_delivery"))
        return {bytes(body): (row_id, status) for body, row_id, status in result}


def post_all(client: httpx.Client, engine: Engine, bodies: list[bytes]) -> list[int]:
    """POST concurrently; each 200 must already have its row. Returns the status codes."""

    def post(body: bytes) -> int:
        headers = {"X-Hub-Signature-256": sign(body, APP_SECRET)}
        code = client.post("/webhooks/instagram", content=body, headers=headers).status_code
        if code == 200:
            assert body in statuses(engine)  # durable before the answer
        return code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(post, bodies))


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


def relay_errors(app: Starlette) -> float:
    """The relay's failed passes, as its /metrics counts them."""
    return float(app.state.registry.get_sample_value("archiver_relay_errors_total") or 0.0)


def queued(server: PrivateRedis, ids: list[int]) -> bool:
    """Every id has its arq job key and its place in arq's queue."""
    client = redis.Redis.from_url(server.url)
    try:
        return all(
            client.exists(job_key_prefix + delivery_job_id(i))
            and client.zscore(DELIVERIES_QUEUE, delivery_job_id(i)) is not None
            for i in ids
        )
    finally:
        client.close()


async def drain(settings: Settings, ids: list[int]) -> int:
    """Check the queued jobs as arq reads them, then run the real worker in burst mode."""
    pool: ArqRedis = await create_pool(RedisSettings.from_dsn(settings.redis_url or ""))
    for delivery_id in ids:
        info = await Job(delivery_job_id(delivery_id), pool).info()
        assert info is not None
        assert (info.function, info.args) == (PROCESS_DELIVERY, (delivery_id,))
    worker = build_worker(
        settings,
        lane=DELIVERIES,
        burst=True,
        poll_delay=0,
        redis_pool=pool,
        handle_signals=False,
        cron_jobs=False,
    )
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker.jobs_complete


def test_redis_restart_mid_ingest(
    database_url: str, engine: Engine, private_redis: PrivateRedis
) -> None:
    """With Redis stopped every delivery is still answered 200 and stored; once it is back
    the relay enqueues every one of them and the worker processes them all."""
    with Session(engine) as session:
        session.add(Account(name="shop", ig_user_id=IG, ig_token="EAAtoken-0123456789"))
        session.commit()
    settings = make_settings(database_url, private_redis.url)
    app = create_app(settings)
    before = [story(n) for n in range(5)]
    during = [story(n) for n in range(5, 35)]
    after = [story(n) for n in range(35, 40)]
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        assert post_all(client, engine, before) == [200] * len(before)
        wait_until(lambda: all(s == ENQUEUED for _, s in statuses(engine).values()))

        private_redis.stop()
        assert post_all(client, engine, during) == [200] * len(during)
        wait_until(lambda: relay_errors(app) > 0)  # the relay saw the outage
        stored = statuses(engine)
        assert {stored[body][1] for body in during} == {RECEIVED}

        private_redis.start()  # same port, empty: it kept nothing
        assert post_all(client, engine, after) == [200] * len(after)
        ids = [statuses(engine)[body][0] for body in during + after]
        wait_until(lambda: queued(private_redis, ids), timeout=20)
        wait_until(lambda: all(statuses(engine)[b][1] == ENQUEUED for b in during + after))

    assert asyncio.run(drain(settings, ids)) == len(ids)
    final = statuses(engine)
    assert [final[body][1] for body in during + after] == [PROCESSED] * len(ids)
