"""Threads user totals asked one closed Meta day at a time, end to end: the real arq worker,
real Redis, the simulator over HTTP, SQLite and PostgreSQL; summing days counts each once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from metasim.world.entities import Call
from models.types import UTCDateTime
from tests.metasim_fixtures import RunningSim
from tests.test_threads_jobs import register, snapshots, threads_settings
from tests.workers_harness import eventually, running_workers
from workers.captures.threads_polls import TOTALS, TOTALS_CALLS_PER_POLL
from workers.meta.days import day_start


def total_calls(sim: RunningSim) -> list[Call]:
    return [
        c
        for c in sim.world.log.calls(kind="threads_insights")
        if c.params.get("metric") == ",".join(TOTALS)
    ]


def daily(engine: Engine, metric: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT * FROM threads_user_daily WHERE metric = :m ORDER BY day"),
            {"m": metric},
        )
        return [dict(row._mapping) for row in rows]


def as_utc(value: Any, engine: Engine) -> datetime:
    found = UTCDateTime().process_result_value(value, engine.dialect)
    assert found is not None
    return found


@pytest.mark.anyio
async def test_summing_likes_over_days_gives_metas_total_for_those_days(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """Two polls store eight distinct closed Pacific days; the view's SUM of likes over them
    is exactly what Meta answers for the whole range, and no call asks an open range."""
    account = register(engine, sim.world)
    async with running_workers(threads_settings(engine, redis_url, sim)):
        await eventually(lambda: len(total_calls(sim)) >= 2 * TOTALS_CALLS_PER_POLL)
        await eventually(lambda: len(snapshots(engine, "threads_user")) >= 2)
    calls = total_calls(sim)
    windows = [(int(c.params["since"]), int(c.params["until"])) for c in calls]
    assert len(windows) == len(set(windows)), "a settling day was asked twice"
    for since, until in windows:
        start, end = (datetime.fromtimestamp(t, UTC) for t in (since, until))
        assert (day_start(start), day_start(end)) == (start, end)
    rows = daily(engine, "likes")
    ends = {as_utc(row["end_time"], engine) for row in rows}
    assert len(rows) == len(ends) >= 2 * TOTALS_CALLS_PER_POLL
    assert ends == {datetime.fromtimestamp(until, UTC) for _, until in windows}
    since, until = min(s for s, _ in windows), max(u for _, u in windows)  # contiguous days
    with httpx.Client(base_url=sim.threads_url) as http:
        body = http.get(
            f"/v1.0/{account.threads_user_id}/threads_insights",
            params={"metric": "likes", "since": since, "until": until,
                    "access_token": account.threads_token},
        ).json()  # fmt: skip
    assert sum(row["value"] for row in rows) == body["data"][0]["total_value"]["value"]
