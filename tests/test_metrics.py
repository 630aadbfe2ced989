"""/metrics shows what the workers did: Meta calls by status, pauses, captures, token expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.accounts import Account
from models.config import Settings
from models.snapshots import Media
from models.stats import stat_field
from models.types import utcnow
from receiver.app import create_app
from tests.test_receiver import serve
from workers.pacing import Pacer

TOKEN = "IGQVJ-secret-token-0123456789"


def test_stat_fields_name_the_platform() -> None:
    """The pacer's keys map to the platform label the exposition uses."""
    assert stat_field("ig:1784", "200") == "instagram|200"
    assert stat_field("app", "slowdown") == "instagram|slowdown"
    assert stat_field("threads:2500", "500") == "threads|500"
    assert stat_field("app:threads", "slowdown") == "threads|slowdown"


async def _worker_activity(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        pacer = Pacer(redis, minute_seconds=1.0)
        for status in ("200", "200", "400", "error"):
            await pacer.count_call("ig:1784", status)
        await pacer.count_call("threads:2500", "200")
        await pacer.pause("ig:1784", 0.01, reason="throttled")
    finally:
        await redis.aclose()


def test_metrics_expose_worker_figures_and_no_token(
    settings: Settings, engine: Engine, redis_url: str
) -> None:
    """Counters from Redis and gauges from the database appear; the token never does."""
    asyncio.run(_worker_activity(redis_url))
    with Session(engine) as session:
        account = Account(name="shop", ig_user_id="1784", ig_token=TOKEN,
                          ig_token_expires_at=utcnow() + timedelta(days=30))  # fmt: skip
        session.add(account)
        session.flush()
        assert account.id is not None
        for n, state in enumerate(("final_captured", "final_captured", "missed")):
            session.add(Media(account_id=account.id, platform="instagram", subject_type="story",
                              media_id=f"18{n}", capture_state=state))  # fmt: skip
        session.commit()
    with serve(create_app(settings)) as client:
        text = client.get("/metrics").text
    assert 'archiver_meta_calls_total{platform="instagram",status="200"} 2' in text
    assert 'archiver_meta_calls_total{platform="instagram",status="error"} 1' in text
    assert 'archiver_meta_calls_total{platform="threads",status="200"} 1' in text
    assert 'archiver_throttle_pauses_total{platform="instagram",reason="throttled"} 1' in text
    assert 'archiver_media{subject_type="story",state="final_captured"} 2' in text
    assert 'archiver_media{subject_type="story",state="missed"} 1' in text
    days = next(line for line in text.splitlines() if line.startswith("archiver_token_days_left"))
    assert 29.9 < float(days.split()[-1]) <= 30.0
    assert TOKEN not in text
