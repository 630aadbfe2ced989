"""Tokens Meta quotes back in its errors end up nowhere in clear: the simulator answers errors
that quote the caller's token, an older token and the request URL; the real jobs, against it
over HTTP with real Redis and both databases, store the errors masked on the account, the
story and the snapshot's raw, log them masked, and `archiver status` (text and --json) shows
them masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.redaction import MASK
from models.snapshots import raw_body
from tests.metasim_fixtures import RunningSim
from tests.test_metasim import V, error, get
from tests.test_status import Status, status_runner
from tests.test_stories import DAY, stories, story_snapshots
from tests.test_threads_jobs import account_of, register, threads_settings
from tests.workers_harness import job_context
from workers.captures.stories import capture_story, poll_stories
from workers.captures.threads_polls import poll_threads

TOKEN_COLUMNS = ("ig_token", "threads_token")
NOT_ENOUGH_VIEWERS = "(#10) Not enough viewers for the media to show insights ({quote})"
NO_PERMISSION = "(#10) Application does not have permission for this action ({quote})"


@pytest.fixture
def status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Status]:
    """`archiver status ARGS` in-process (tests.test_status)."""
    yield from status_runner(monkeypatch, tmp_path, capsys)


@pytest.fixture
def http(sim: RunningSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5.0) as client:
        yield client


def test_the_simulator_quotes_tokens_back(sim: RunningSim, http: httpx.Client) -> None:
    """A `quote` fault answers 190/463 quoting the caller's token or an older one of the same
    owner (minted, already expired), or (#100) quoting the request URL with its token."""
    account = sim.world.add_account()
    path = f"/facebook/{V}/{account.ig_user_id}/stories"
    sim.world.faults.add(account=account.ig_user_id, quote="token")
    own = error(get(http, path, account.token))
    sim.world.faults.add(account=account.ig_user_id, quote="old_token")
    old = error(get(http, path, account.token))
    sim.world.faults.add(account=account.ig_user_id, quote="url", status=500)
    url = get(http, path, account.token)
    (older,) = set(sim.world.tokens.issued) - {account.token}
    assert (own["code"], own["error_subcode"]) == (190, 463)
    assert account.token in own["message"]
    assert older in old["message"]
    assert older.startswith("EAAG")
    assert sim.world.tokens.issued[older].expired(sim.world.now())
    assert url.status_code == 500
    assert f"access_token={account.token}" in error(url)["message"]


def test_a_quote_fault_is_refused_unless_well_formed(sim: RunningSim, http: httpx.Client) -> None:
    """The control API refuses an unknown quote and a message that does not say where."""
    bad_kind = http.post("/_sim/faults", json={"quote": "password"})
    no_place = http.post("/_sim/faults", json={"quote": "token", "message": "expired"})
    good = http.post("/_sim/faults", json={"quote": "token", "message": "token {quote} died"})
    assert (bad_kind.status_code, no_place.status_code, good.status_code) == (400, 400, 200)
    assert "quote must be one of token, old_token, url" in bad_kind.json()["error"]
    assert good.json()["faults"][0]["quote"] == "token"


def stored_text(engine: Engine) -> str:
    """Every row of the tables that keep errors, reasons and raw answers, as text, but for
    the account's own token columns."""
    with engine.connect() as conn:
        return "\n".join(
            str({k: v for k, v in row._mapping.items() if k not in TOKEN_COLUMNS})
            for table in ("account", "media", "snapshot", "metric_unavailable")
            for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
        )


async def quote_everywhere(sim: RunningSim, engine: Engine, redis_url: str) -> int:
    """Drive the jobs through errors that quote tokens; the account id."""
    account = register(engine, sim.world)
    ig, th = account.ig_user_id, account.threads_user_id or ""
    assert account.id is not None
    story = sim.world.add_story(ig, age_seconds=DAY - 3600)
    async with job_context(threads_settings(engine, redis_url, sim)) as ctx:
        await poll_stories(ctx, account.id)
        sim.world.faults.add(account=ig, kind="insights", code=10, quote="token",
                            message=NOT_ENOUGH_VIEWERS)  # fmt: skip
        await capture_story(ctx, story.id, "first")
        sim.world.faults.add(account=th, kind="threads_insights", code=10, quote="url",
                            message=NO_PERMISSION)  # fmt: skip
        await poll_threads(ctx, account.id, 0)
        sim.world.faults.add(account=ig, kind="stories", code=10, quote="old_token",
                            message=NO_PERMISSION)  # fmt: skip
        await poll_stories(ctx, account.id)
        sim.world.faults.add(account=ig, kind="stories", quote="token")
        await poll_stories(ctx, account.id)
    assert len(sim.world.log.calls(kind="stories")) == 3
    return account.id


@pytest.mark.anyio
async def test_quoted_tokens_are_masked_in_the_database_the_log_and_status(
    engine: Engine,
    database_url: str,
    redis_url: str,
    sim: RunningSim,
    status: Status,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After errors quoting the current token, an older one and a URL, no token is in any
    row, log line or status report, and each place shows the mask where the token was."""
    caplog.set_level(logging.DEBUG)
    account_id = await quote_everywhere(sim, engine, redis_url)
    row = account_of(engine, account_id)
    (media_id,) = stories(engine)
    (snapshot,) = story_snapshots(engine, media_id)
    code, out, err = status(DATABASE_URL=database_url)
    json_code, doc, _ = status("--json", DATABASE_URL=database_url)
    report: dict[str, Any] = json.loads(doc)["accounts"][0]
    assert (code, err, json_code) == (0, "", 0)
    assert row.state == "reauth_required"
    assert MASK in (row.state_reason or "")
    assert MASK in (row.ig_problem or "")
    assert MASK in (row.threads_problem or "")
    with engine.connect() as conn:
        assert MASK in json.dumps(raw_body(conn, snapshot.id))
    assert MASK in report["ig_problem"]
    assert report["threads"]["problem"].startswith("permission denied")
    assert MASK in out
    tokens = list(sim.world.tokens.issued)
    assert len(tokens) == 3  # the account's, its Threads profile's, and the older one quoted
    for place in (stored_text(engine), caplog.text, out, doc):
        for token in tokens:
            assert token not in place
