"""`archiver accounts backfill --media-since`: the feed and Reels backfill, run as the real
console script against the Meta simulator served over HTTP."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.commands.threads_link import media_day
from models.accounts import Account
from models.db import create_db_engine, session_scope
from tests.metasim_fixtures import RunningSim, running_metasim
from tests.test_accounts_threads import IG_TOKEN, IG_USER, assert_no_token, query, sim_env
from tests.test_cli import archiver

DAY = 86400.0


@pytest.fixture(scope="module")
def served() -> Iterator[RunningSim]:
    with running_metasim(minute_seconds=1.0) as sim:
        yield sim


@pytest.fixture
def sim(served: RunningSim) -> RunningSim:
    """The module's simulator, emptied, with one IG account and 40 media, one every 2 days."""
    served.fresh()
    served.world.add_account(ig_user_id=IG_USER, token=IG_TOKEN)
    for n in range(40):
        kind = "REELS" if n % 3 == 0 else "FEED"
        served.world.feed.add_media(IG_USER, media_product_type=kind, age_seconds=2 * DAY * n + 60)
    return served


def add_account(database_url: str) -> None:
    """The account as `accounts add` stores it (its own command is tested elsewhere)."""
    engine = create_db_engine(database_url)
    try:
        with session_scope(engine) as session:
            session.add(Account(name="brand", ig_user_id=IG_USER, ig_token=IG_TOKEN))
    finally:
        engine.dispose()


def test_backfill_stores_the_media_since_the_day_once(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """Media posted since the day are stored, due a first capture; a second run adds none
    and reads only as far as that day; progress counts days."""
    env = sim_env(sqlite_url, sim)
    add_account(sqlite_url)
    day = (sim.world.now() - timedelta(days=30)).date()
    wanted = [m for m in sim.world.feed.media_of(IG_USER) if m.timestamp.date() >= day]
    result = archiver(
        "accounts", "backfill", "--name", "brand", "--media-since", day.isoformat(),
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{len(wanted)} new" in result.stdout
    assert " days, " in result.stderr
    assert_no_token(result)
    rows = query(
        sqlite_url,
        "SELECT subject_type, capture_state, next_slot FROM media ORDER BY posted_at DESC",
    )
    assert len(rows) == len(wanted)
    assert {(r[1], r[2]) for r in rows} == {("tracked", "first")}
    assert {r[0] for r in rows} == {"feed", "reel"}
    pages = len(sim.world.log.calls(kind="ig_media_list"))
    again = archiver(
        "accounts", "backfill", "--id", "1", "--media-since", day.isoformat(),
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0
    assert "0 new" in again.stdout
    assert len(sim.world.log.calls(kind="ig_media_list")) == 2 * pages


@pytest.mark.parametrize("bad", ["31/01/2026", "2999-01-01"])
def test_a_malformed_or_future_day_is_refused(bad: str) -> None:
    """--media-since takes a past or present YYYY-MM-DD (argparse then exits 2, one line)."""
    with pytest.raises(argparse.ArgumentTypeError, match=r"not a day|future"):
        media_day(bad)


def test_throttling_is_exit_7_and_one_line(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """Throttling exits 7 with the wait and the command that resumes; no token, no trace."""
    env = sim_env(sqlite_url, sim)
    add_account(sqlite_url)
    sim.world.faults.add(code=4, kind="ig_media_list", count=1)
    base = ("accounts", "backfill", "--name", "brand", "--media-since")
    throttled = archiver(*base, "2026-01-01", env=env, cwd=tmp_path)
    assert throttled.returncode == 7
    (line,) = throttled.stderr.strip().splitlines()[-1:]
    assert "media backfill of account 'brand' stopped" in line
    assert "Meta throttles this account, try in " in line
    assert "--media-since 2026-01-01` resumes" in line
    assert "Traceback" not in throttled.stderr
    assert_no_token(throttled)
