"""`accounts add` with Threads, `accounts threads` and `accounts backfill`, run as the real
console script against the Meta simulator served over HTTP."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from archiver.progress import ProgressBar
from models.db import create_db_engine
from tests.metasim_fixtures import RunningSim, running_metasim
from tests.servers import wait_until
from tests.test_cli import archiver, env_for

IG_USER = "17841405309211844"
THREADS_USER = "25000000000000042"
OTHER_THREADS_USER = "25000000000000077"
IG_TOKEN = "EAABsbCS1iHgBAKZCZCw9ZBZCZBWZCZAZBQ1x2y3z4"
# Not shaped like a Meta token, so only the archiver's own scrubbing can keep it out.
THREADS_TOKEN = "sim-threads-secret-0123456789"
OTHER_TOKEN = "sim-other-secret-9876543210"
FLOOR = 1712991600  # the earliest `since` the Threads insights API accepts


@pytest.fixture(scope="module")
def served() -> Iterator[RunningSim]:
    with running_metasim(minute_seconds=1.0) as sim:
        yield sim


@pytest.fixture
def sim(served: RunningSim) -> RunningSim:
    """The module's simulator, emptied, with one IG account and its Threads profile."""
    served.fresh()
    served.world.add_account(ig_user_id=IG_USER, token=IG_TOKEN)
    served.world.add_threads_user(threads_user_id=THREADS_USER, token=THREADS_TOKEN)
    return served


def sim_env(database_url: str, sim: RunningSim, redis_url: str | None = None) -> dict[str, str]:
    return env_for(
        database_url,
        redis_url,
        THREADS_GRAPH_URL=sim.threads_url,
        FACEBOOK_GRAPH_URL=sim.facebook_url,
        INSTAGRAM_GRAPH_URL=sim.instagram_url,
    )


ADD = ["accounts", "add", "--name", "brand", "--ig-user-id", IG_USER, "--ig-token", IG_TOKEN]
WITH_THREADS = ["--threads-user-id", THREADS_USER, "--threads-token", THREADS_TOKEN]


def query(database_url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def threads_columns(database_url: str) -> tuple[object, ...]:
    return query(
        database_url,
        "SELECT threads_user_id, threads_link_source, threads_state, next_threads_poll_at, "
        "threads_linked_at FROM account",
    )[0]


VIEWS = (
    "SELECT count(*), count(DISTINCT end_time), min(value) FROM metric_history "
    "WHERE subject_type = 'threads_user' AND metric = 'views'"
)


def assert_no_token(result: subprocess.CompletedProcess[str]) -> None:
    for token in (IG_TOKEN, THREADS_TOKEN, OTHER_TOKEN):
        assert token not in result.stdout + result.stderr


def test_add_with_threads_backfills_views_from_the_api_floor(
    database_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """Adding a Threads profile stores its daily views, chunk by chunk, never before the floor."""
    result = archiver(*ADD, *WITH_THREADS, env=sim_env(database_url, sim), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    count, days, lowest = query(database_url, VIEWS)[0]
    assert isinstance(count, int)
    assert isinstance(days, int)
    assert days > 600  # more than 20 months of days since 2024-04-13
    assert lowest is not None
    calls = sim.world.log.calls(kind="threads_insights")
    assert calls
    assert all(int(call.params["since"]) >= FLOOR for call in calls)
    assert min(int(call.params["since"]) for call in calls) == FLOOR
    chunks = query(database_url, "SELECT count(*) FROM snapshot WHERE slot LIKE 'backfill:%'")
    assert chunks[0][0] == len(calls)
    assert f"backfilled Threads views: {count} values in {len(calls)} chunks" in result.stdout
    assert_no_token(result)


def test_progress_is_one_line_per_tenth_when_not_a_terminal(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """Piped stderr gets at most one progress line per 10 %, ending at 100 % with the totals."""
    result = archiver(*ADD, *WITH_THREADS, env=sim_env(sqlite_url, sim), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "chunks" in line]
    assert 3 <= len(lines) <= 10
    assert "\r" not in result.stderr
    total = len(sim.world.log.calls(kind="threads_insights"))
    assert lines[-1].startswith(f"views of Threads user {THREADS_USER} [{'#' * 24}] 100% ")
    assert f" {total}/{total} chunks, " in lines[-1]
    percents = [int(line.split("]")[1].split("%")[0]) for line in lines]
    assert percents == sorted(set(percents))


def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    """On a terminal the bar is redrawn with \\r, and closing ends the line once."""
    stream = io.StringIO()
    ticks = iter([0.0, 1.0, 2.0, 3.5])
    bar = ProgressBar("views", stream=stream, tty=True, clock=lambda: next(ticks))
    bar.update(1, 3, 30)
    bar.update(2, 3, 60)
    bar.update(3, 3, 91)
    bar.close()
    bar.close()
    out = stream.getvalue()
    assert out.count("\r") == 3
    assert out.count("\n") == 1
    assert out.endswith("100% 3/3 chunks, 91 values, 3.5s\n")
    assert "[########................]  33% 1/3 chunks, 30 values, 1.0s" in out


def test_lookup_links_the_connected_threads_user(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """--lookup on a Facebook Login account stores Instagram's connected Threads profile."""
    sim.world.link(IG_USER, THREADS_USER)
    env = sim_env(sqlite_url, sim)
    assert archiver(*ADD, env=env, cwd=tmp_path).returncode == 0
    result = archiver(
        "accounts", "threads", "--name", "brand", "--lookup", "--threads-token", THREADS_TOKEN,
        "--no-backfill", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    user_id, source, state, next_poll, linked_at = threads_columns(sqlite_url)
    assert (user_id, source, state, next_poll) == (
        THREADS_USER, "connected_threads_user", "active", None,
    )  # fmt: skip
    assert linked_at is not None
    assert len(sim.world.log.calls(kind="connected_threads_user")) == 1
    assert len(sim.world.log.calls(kind="me")) == 1
    assert sim.world.log.calls(kind="threads_insights") == []  # --no-backfill
    assert f"to Threads user {THREADS_USER} (connected_threads_user)" in result.stdout
    assert_no_token(result)


def test_explicit_id_that_is_not_the_tokens_own_is_refused(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """A --threads-user-id that /me contradicts is refused in one line and nothing is stored."""
    sim.world.add_threads_user(threads_user_id=OTHER_THREADS_USER, token=OTHER_TOKEN)
    env = sim_env(sqlite_url, sim)
    assert archiver(*ADD, env=env, cwd=tmp_path).returncode == 0
    result = archiver(
        "accounts", "threads", "--id", "1", "--threads-user-id", THREADS_USER,
        "--threads-token", OTHER_TOKEN, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 4
    assert result.stderr.splitlines() == [
        f"archiver: error: the Threads token belongs to Threads user {OTHER_THREADS_USER}, "
        f"not {THREADS_USER}: nothing changed"
    ]
    assert threads_columns(sqlite_url)[0] is None
    assert sim.world.log.calls(kind="threads_insights") == []
    assert_no_token(result)


def test_expired_threads_token_is_one_clear_line_without_the_token(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """An expired token stops the backfill: exit 6, one line, no traceback, token flagged
    (--no-check: the check on add would refuse the token before the account is stored)."""
    sim.world.tokens.expire_token(threads_user=THREADS_USER)
    args = [*ADD, *WITH_THREADS, "--no-check"]
    result = archiver(*args, env=sim_env(sqlite_url, sim), cwd=tmp_path)
    assert result.returncode == 6
    assert "added account 1 'brand'" in result.stdout  # the account itself is kept
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("archiver: error: the views backfill of account 'brand' stopped")
    assert "the token was refused (token expired)" in line
    assert "archiver accounts threads --id 1" in line
    assert_no_token(result)
    state = query(sqlite_url, "SELECT threads_state, threads_state_reason FROM account")[0]
    assert state[0] == "reauth_required"
    assert THREADS_TOKEN not in str(state[1])


def test_relinking_with_an_expired_token_changes_nothing(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """`accounts threads` checks the token with /me first: expired means exit 6, no change."""
    env = sim_env(sqlite_url, sim)
    assert archiver(*ADD, env=env, cwd=tmp_path).returncode == 0
    sim.world.tokens.expire_token(threads_user=THREADS_USER)
    result = archiver(
        "accounts", "threads", "--name", "brand", *WITH_THREADS, env=env, cwd=tmp_path
    )
    assert result.returncode == 6
    assert result.stderr.startswith("archiver: error: checking the Threads token (/me): ")
    assert len(result.stderr.splitlines()) == 1
    assert threads_columns(sqlite_url)[0] is None
    assert_no_token(result)


def test_throttling_is_exit_7_and_says_when_to_try(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """Meta throttling mid-backfill exits 7 with the wait, keeping the chunks already stored."""
    env = sim_env(sqlite_url, sim)
    assert archiver(*ADD, *WITH_THREADS, "--no-backfill", env=env, cwd=tmp_path).returncode == 0
    sim.world.faults.add(code=4, kind="threads_insights", count=1)
    result = archiver("accounts", "backfill", "--name", "brand", env=env, cwd=tmp_path)
    assert result.returncode == 7
    (line,) = result.stderr.splitlines()
    assert "(0 of ? chunks stored): Meta throttles this account, try in " in line
    assert query(sqlite_url, "SELECT threads_state FROM account")[0][0] == "active"


def test_backfill_command_runs_again_with_the_redis_pacer(
    sqlite_url: str, redis_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """`accounts backfill` stores the history for a profile added with --no-backfill."""
    env = sim_env(sqlite_url, sim, redis_url)
    assert archiver(*ADD, *WITH_THREADS, "--no-backfill", env=env, cwd=tmp_path).returncode == 0
    assert query(sqlite_url, VIEWS)[0][0] == 0
    result = archiver("accounts", "backfill", "--name", "brand", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stored = query(sqlite_url, VIEWS)[0][0]
    assert isinstance(stored, int)
    assert stored > 600
    missing = archiver("accounts", "backfill", "--name", "nobody", env=env, cwd=tmp_path)
    assert missing.returncode == 3


def test_backfill_without_a_threads_profile_is_not_found(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """`accounts backfill` on an account without Threads names the command that links one."""
    env = sim_env(sqlite_url, sim)
    assert archiver(*ADD, env=env, cwd=tmp_path).returncode == 0
    added = sim.world.log.calls()  # the check of the Instagram token
    result = archiver("accounts", "backfill", "--id", "1", env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert "link one with `archiver accounts threads`" in result.stderr
    assert sim.world.log.calls() == added


def test_unlink_forgets_the_profile_and_keeps_its_snapshots(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """--unlink clears the Threads columns; the history already captured stays queryable."""
    env = sim_env(sqlite_url, sim)
    assert archiver(*ADD, *WITH_THREADS, env=env, cwd=tmp_path).returncode == 0
    before = query(sqlite_url, VIEWS)[0][0]
    result = archiver("accounts", "threads", "--name", "brand", "--unlink", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"unlinked Threads user {THREADS_USER} from account 1 'brand'\n"
    row = query(
        sqlite_url, "SELECT threads_user_id, threads_token, threads_link_source FROM account"
    )
    assert row == [(None, None, None)]
    assert query(sqlite_url, VIEWS)[0][0] == before
    again = archiver("accounts", "threads", "--name", "brand", "--unlink", env=env, cwd=tmp_path)
    assert "nothing to do" in again.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["accounts", "threads", "--name", "a", "--lookup"],
        ["accounts", "threads", "--name", "a", "--unlink", "--threads-token", THREADS_TOKEN],
        ["accounts", "threads", "--name", "a", "--lookup", "--threads-user-id", "1",
         "--threads-token", THREADS_TOKEN],
        ["accounts", "threads", "--threads-user-id", "1", "--threads-token", THREADS_TOKEN],
        ["accounts", "backfill"],
    ],
    ids=repr,
)  # fmt: skip
def test_wrong_threads_arguments_are_usage_errors(args: list[str], tmp_path: Path) -> None:
    """Incomplete or contradictory options: one line, exit 2, the token never echoed."""
    result = archiver(*args, env=env_for(f"sqlite:///{tmp_path}/a.db"), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert THREADS_TOKEN not in result.stderr


def test_ctrl_c_stops_the_backfill_and_keeps_the_stored_chunks(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """SIGINT mid-backfill: exit 130, a note on how to finish, no traceback, chunks kept."""
    env = sim_env(sqlite_url, sim)
    assert archiver(*ADD, *WITH_THREADS, "--no-backfill", env=env, cwd=tmp_path).returncode == 0
    sim.world.faults.add(delay=0.3, kind="threads_insights", count=1000)
    chunks = "SELECT count(*) FROM snapshot WHERE slot LIKE 'backfill:%'"
    with (tmp_path / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "archiver", "accounts", "backfill", "--name", "brand"],
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        try:
            wait_until(lambda: query(sqlite_url, chunks) != [(0,)] or proc.poll() is not None)
            wait_until(lambda: query(sqlite_url, chunks) != [(1,)] or proc.poll() is not None)
            proc.send_signal(signal.SIGINT)
            status = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = (tmp_path / "stderr.txt").read_text()
    assert status == 130, text
    assert "Traceback" not in text
    found = re.search(r"interrupted: (\d+) of (\d+) chunks stored; (.*)", text)
    assert found is not None, text
    done, total = int(found[1]), int(found[2])
    assert found[3] == "`archiver accounts backfill --id 1` finishes it"
    assert 1 <= done < total
    # The chunk in flight when Ctrl+C came may have committed before its progress line.
    assert query(sqlite_url, chunks)[0][0] in (done, done + 1)
