"""arq's own convention works: `arq workers.main.WorkerSettings` (and the other two lanes'
classes) runs a lane, with Settings read from the environment when arq asks, not at import."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from arq.utils import import_string
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from jobqueue.names import CONTROL_QUEUE, DELIVERIES_QUEUE, MAIN_QUEUE, PROCESS_DELIVERY
from models.tables import table_of
from tests.conftest import make_settings
from tests.processes import archiver_env
from tests.test_deliveries import add_account, add_delivery, delivery_row, story_body
from tests.test_worker import enqueue
from workers.main import DELIVERIES, lane_settings
from workers.runtime.context import Context

ARQ = Path(sys.executable).with_name("arq")


@pytest.mark.parametrize(
    ("name", "queue"),
    [
        ("WorkerSettings", MAIN_QUEUE),
        ("DeliveriesWorkerSettings", DELIVERIES_QUEUE),
        ("ControlWorkerSettings", CONTROL_QUEUE),
    ],
)
def test_each_lane_has_a_worker_settings_class(
    name: str, queue: str, sqlite_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("JOB_TIMEOUT_SECONDS", "321")
    found = import_string(f"workers.main.{name}")
    assert isinstance(found, type)
    settings: dict[str, Any] = dict(vars(found))
    assert (settings["queue_name"], settings["job_timeout"], settings["keep_result"]) == (
        queue,
        321,
        0,
    )


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(ImportError, match="NoSuchSettings"):
        import_string("workers.main.NoSuchSettings")


@pytest.mark.slow
def test_arq_cli_runs_the_deliveries_lane(
    engine: Engine, database_url: str, redis_url: str
) -> None:
    """`arq workers.main.DeliveriesWorkerSettings --burst` processes a queued delivery."""
    add_account(engine)
    delivery_id = add_delivery(engine, story_body())
    asyncio.run(enqueue(redis_url, [delivery_id]))
    env = archiver_env(database_url, redis_url) | {"HOME": os.environ.get("HOME", "/tmp")}
    done = subprocess.run(
        [str(ARQ), "workers.main.DeliveriesWorkerSettings", "--burst"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert PROCESS_DELIVERY in done.stderr
    assert delivery_row(engine, delivery_id).status == "processed"


@pytest.mark.anyio
async def test_a_lane_stopped_before_arq_connected_shuts_down_cleanly(
    sqlite_url: str, redis_url: str
) -> None:
    """A signal can stop a worker before arq has put Redis in ctx: the shutdown hook then
    leaves the member registry alone and still releases what startup made, without raising."""
    settings = make_settings(sqlite_url, redis_url)
    hooks: dict[str, Any] = dict(vars(lane_settings(settings, DELIVERIES)))
    ctx: Context = {}
    await hooks["on_shutdown"](ctx)
    assert ctx == {}


def test_table_of_refuses_a_model_without_a_table() -> None:
    class NotATable(SQLModel):
        name: str

    with pytest.raises(TypeError, match="NotATable is not a table model"):
        table_of(NotATable)
