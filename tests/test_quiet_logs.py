"""Quiet, useful logs: an idle worker says nothing at INFO, JSON lines carry no colour codes,
and a failed job's line names its job and account as fields."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest
from arq import Retry
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from archiver.listeners import make_server
from archiver.logs import setup_logging
from tests.conftest import make_settings
from tests.db_faults import failing_inserts
from tests.metasim_fixtures import RunningSim
from tests.test_logs import restore_root
from tests.test_stories import DAY
from tests.test_story_failures import listing_ctx
from workers.captures.stories import capture_story, poll_stories
from workers.main import CONTROL, build_worker

__all__ = ["restore_root"]  # the fixture, shared with tests/test_logs.py
STARTUP = ("Starting worker for", "redis_version=")  # arq's start-up lines, once per lane


def capture(level: str, fmt: str = "json") -> io.StringIO:
    stream = io.StringIO()
    setup_logging(make_settings("sqlite://", None, log_format=fmt, log_level=level), stream=stream)
    return stream


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def idle_control_lane(sqlite_url: str, redis_url: str) -> int:
    """Run the control lane's start-up cron jobs (tick, token refresh) once, with no work."""
    settings = make_settings(sqlite_url, redis_url)
    worker = build_worker(settings, lane=CONTROL, burst=True, poll_delay=0, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker.jobs_complete


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_an_idle_tick_logs_nothing_at_info(
    sqlite_url: str, redis_url: str, level: str, restore_root: None
) -> None:
    """arq's per-job lines and the tick's own line drop to DEBUG when nothing was done."""
    stream = capture(level)
    ran = asyncio.run(idle_control_lane(sqlite_url, redis_url))
    lines = entries(stream)
    assert ran >= 1
    ticks = [e for e in lines if e["message"].startswith("tick: ")]
    if level == "INFO":
        said = [e["message"] for e in lines if e["level"] == "INFO"]
        assert [m for m in said if not m.startswith(STARTUP)] == []
        assert ticks == []
    else:  # the same lines exist, demoted
        assert any("schedule_due" in e["message"] and e["level"] == "DEBUG" for e in lines)
        assert [(e["level"], e["missed"]) for e in ticks] == [("DEBUG", 0)]


async def serve_once(stream: io.StringIO) -> None:
    settings = make_settings("sqlite://", None)
    server = make_server(Starlette(), settings, address=("127.0.0.1", 0), lifespan="off")
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    server.should_exit = True
    await task


def test_json_lines_carry_no_colour_codes_and_one_shutdown_line(restore_root: None) -> None:
    """uvicorn adds an ANSI `color_message` to its lines and narrates its shutdown: neither
    reaches the JSON log."""
    stream = capture("INFO")
    asyncio.run(serve_once(stream))
    text = stream.getvalue()
    lines = entries(stream)
    assert any(e["message"].startswith("Started server process") for e in lines)
    assert "\x1b[" not in text
    assert "\\u001b[" not in text
    assert all("color_message" not in e for e in lines)
    narrated = ("Shutting down", "Waiting for", "Finished server process")
    assert [e["message"] for e in lines if e["message"].startswith(narrated)] == []


def test_colour_codes_in_a_message_are_stripped(restore_root: None) -> None:
    stream = capture("INFO")
    logging.getLogger("test.colour").warning("\x1b[31mred\x1b[0m %s", "x", extra={"k": "\x1b[1mb"})
    (entry,) = entries(stream)
    assert (entry["message"], entry["k"]) == ("red x", "b")


@pytest.mark.anyio
async def test_a_failed_job_logs_its_job_and_account_ids(
    engine: Engine, redis_url: str, sim: RunningSim, restore_root: None
) -> None:
    """A listing and a capture that raise: their ERROR lines carry job_id and account_id (and
    the capture's media_id) as fields."""
    async with listing_ctx(engine, redis_url, sim) as (ctx, ig, account_id):
        story = sim.world.add_story(ig, age_seconds=DAY - 3600)
        stream = capture("INFO")
        with failing_inserts(engine, "media"), pytest.raises(Retry):
            await poll_stories(ctx, account_id)
        await poll_stories(ctx, account_id)
        del ctx["account_id"]  # arq gives every job a fresh ctx: the capture finds it itself
        with failing_inserts(engine, "snapshot_raw"), pytest.raises(Retry):
            await capture_story(ctx, story.id, "first")
    errors = [e for e in entries(stream) if e["level"] == "ERROR"]
    assert [(e["job_id"], e["account_id"]) for e in errors] == [("test-job", account_id)] * 2
    assert errors[1]["media_id"] == story.id
    retries = [e for e in entries(stream) if "retry in" in e["message"]]
    assert [e["account_id"] for e in retries] == [account_id] * 2
