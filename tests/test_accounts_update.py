"""`archiver accounts update` and the token checks of `add` and `update`: the real console
script against the Meta simulator over HTTP, the real arq worker for capture resuming."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from archiver import meta_checks
from archiver.threads_meta import open_clients
from core.crypto import PREFIX, new_key
from core.errors import MetaRefused
from metasim import World
from metasim.world.tokens import APP_ID
from metasim.world.tokens import APP_SECRET as SIM_APP_SECRET
from tests.conftest import make_settings
from tests.metasim_fixtures import RunningSim
from tests.test_cli import env_for
from tests.test_stories import account_row, register, story_settings, story_snapshots
from tests.workers_harness import eventually, running_workers
from workers.meta.graph_api import IgAccount

NEW_TOKEN = "EAAnewtoken0123456789abcdefXYZ"
THREADS_USER = "25000000000000042"
THREADS_TOKEN = "sim-threads-secret-0123456789"


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The console script, with `stdin` as its standard input (a pipe, not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "archiver", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def sim_env(database_url: str, sim: RunningSim, **extra: str) -> dict[str, str]:
    return env_for(
        database_url,
        FACEBOOK_GRAPH_URL=sim.facebook_url,
        INSTAGRAM_GRAPH_URL=sim.instagram_url,
        THREADS_GRAPH_URL=sim.threads_url,
        **extra,
    )


def column(database_url: str, sql: str) -> tuple[object, ...]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return tuple(conn.execute(sa.text(sql)).one())
    finally:
        engine.dispose()


def flag_reauth(database_url: str) -> None:
    """What a refused token leaves on both sides, as the workers would store it."""
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE account SET state = 'reauth_required', state_reason = 'expired', "
                "ig_failures = 3, ig_problem = 'p', threads_state = 'reauth_required', "
                "threads_failures = 2, threads_problem = 'q'"
            )
        )
    engine.dispose()


def new_ig_token(world: World, ig_user_id: str) -> str:
    return world.tokens.issue_token("facebook", ig_user_id, NEW_TOKEN).value


@pytest.mark.anyio
async def test_update_clears_reauth_and_the_next_tick_captures_again(
    engine: Engine, redis_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """A lapsed token flags the account; `update` with a new one (checked with Meta, read
    from standard input) makes the running worker list and capture the account's story."""
    ig = register(engine, sim.world)
    sim.world.tokens.expire_token(account_row(engine, ig).ig_token)
    database_url = engine.url.render_as_string(False)
    settings = story_settings(database_url, redis_url, sim)
    async with running_workers(settings):
        await eventually(lambda: account_row(engine, ig).state == "reauth_required")
        story = sim.world.add_story(ig, age_seconds=3600)
        token = new_ig_token(sim.world, ig)
        args = ("accounts", "update", "--name", "shop", "--ig-token", "-")
        env = sim_env(database_url, sim)
        result = await asyncio.to_thread(run_cli, *args, env=env, cwd=tmp_path, stdin=token)
        assert result.returncode == 0, result.stderr
        await eventually(lambda: story_snapshots(engine, story.id), timeout=10)
    account = account_row(engine, ig)
    assert (account.state, account.state_reason, account.ig_token) == ("active", None, token)
    assert "checked with Meta" in result.stdout
    assert f"IG token {token[:4]}…{token[-4:]}" in result.stdout
    assert token not in result.stdout + result.stderr


def add_shop(env: dict[str, str], cwd: Path) -> None:
    """Account 1, `shop`, with old Instagram and Threads tokens, unchecked."""
    added = run_cli(
        "accounts", "add", "--no-check", "--no-backfill", "--name", "shop", "--ig-user-id",
        "1784", "--ig-token", "EAAoldoldoldold1", "--threads-user-id", THREADS_USER,
        "--threads-token", "THold-old-old-old", env=env, cwd=cwd,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


def test_update_from_stdin_is_encrypted_and_clears_both_sides(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Both tokens from standard input (Instagram first), stored encrypted; each side's flag,
    failures and problem cleared and its next poll due now; --no-check asks no one."""
    env = env_for(sqlite_url, TOKEN_ENCRYPTION_KEY=new_key())
    add_shop(env, tmp_path)
    flag_reauth(sqlite_url)
    args = ["accounts", "update", "--id", "1", "--ig-token", "-", "--threads-token", "-"]
    result = run_cli(
        *args, "--no-check", env=env, cwd=tmp_path, stdin=f"{NEW_TOKEN}\n{THREADS_TOKEN}\n"
    )
    assert result.returncode == 0, result.stderr
    assert "not checked (--no-check)" in result.stdout
    assert NEW_TOKEN not in result.stdout
    assert THREADS_TOKEN not in result.stdout
    row = column(
        sqlite_url,
        "SELECT ig_token, threads_token, state, state_reason, ig_failures, ig_problem, "
        "threads_state, threads_failures, threads_problem, next_story_poll_at, "
        "next_threads_poll_at FROM account",
    )
    ig_token, threads_token = str(row[0]), str(row[1])
    assert ig_token.startswith(PREFIX)
    assert threads_token.startswith(PREFIX)
    assert NEW_TOKEN not in ig_token
    assert row[2:9] == ("active", None, 0, None, "active", 0, None)
    assert row[9] is not None
    assert row[10] is not None
    listed = run_cli("accounts", "list", env=env, cwd=tmp_path)
    assert f"{NEW_TOKEN[:4]}…{NEW_TOKEN[-4:]}" in listed.stdout


def test_add_and_update_refuse_a_token_meta_rejects(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """An expired token: exit 6 and one line saying so, never the token; nothing stored."""
    account = sim.world.add_account()
    ig = account.ig_user_id
    env = sim_env(sqlite_url, sim)
    add = ["accounts", "add", "--name", "shop", "--ig-user-id", ig, "--ig-token", "-"]
    assert run_cli(*add, env=env, cwd=tmp_path, stdin=account.token).returncode == 0
    expired = new_ig_token(sim.world, ig)
    sim.world.tokens.expire_token(expired)
    result = run_cli("accounts", "update", "--name", "shop", "--ig-token", "-", env=env,
                     cwd=tmp_path, stdin=expired)  # fmt: skip
    assert result.returncode == 6
    (line,) = result.stderr.splitlines()
    assert "checking the Instagram token (facebook login)" in line
    assert "the token was refused (token expired)" in line
    assert expired not in result.stdout + result.stderr
    assert column(sqlite_url, "SELECT ig_token FROM account") == (account.token,)
    again = run_cli(*add[:3], "other", *add[4:], env=env, cwd=tmp_path, stdin=expired)
    assert again.returncode == 6
    assert column(sqlite_url, "SELECT count(*) FROM account") == (1,)


def test_a_token_of_another_account_is_refused(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """Facebook Login: a token that cannot read the IG user id; Instagram Login: /me names
    another user. Both exit 6 naming the problem."""
    mine, other = sim.world.add_account(), sim.world.add_account()
    ig_login = sim.world.add_account(login="instagram")
    env = sim_env(sqlite_url, sim)
    cases = (
        (mine.ig_user_id, other.token, "facebook", "cannot read this IG user"),
        (mine.ig_user_id, ig_login.token, "instagram", f"belongs to IG user {ig_login.ig_user_id}"),
    )
    for ig_user_id, token, login, expected in cases:
        result = run_cli("accounts", "add", "--name", "x", "--ig-user-id", ig_user_id,
                         "--login", login, "--ig-token", "-", env=env, cwd=tmp_path,
                         stdin=token)  # fmt: skip
        assert result.returncode == 6, result.stderr
        assert expected in result.stderr
        assert token not in result.stderr
    own = run_cli("accounts", "add", "--name", "x", "--ig-user-id", ig_login.ig_user_id,
                  "--login", "instagram", "--ig-token", "-", env=env, cwd=tmp_path,
                  stdin=ig_login.token)  # fmt: skip
    assert own.returncode == 0, own.stderr


def test_no_check_asks_meta_nothing_and_usage_errors_are_clear(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """--no-check stores a token unseen by Meta; an unknown account is exit 3, nothing to
    update exit 2."""
    env = sim_env(sqlite_url, sim)
    add = ["accounts", "add", "--no-check", "--name", "shop", "--ig-user-id", "1784"]
    assert run_cli(*add, "--ig-token", "-", env=env, cwd=tmp_path, stdin="EAAa1").returncode == 0
    update = run_cli("accounts", "update", "--name", "shop", "--no-check", "--login",
                     "instagram", env=env, cwd=tmp_path)  # fmt: skip
    assert update.returncode == 0, update.stderr
    assert sim.world.log.calls() == []
    assert column(sqlite_url, "SELECT login FROM account") == ("instagram",)
    unknown = run_cli("accounts", "update", "--name", "nobody", "--ig-token", "-", env=env,
                      cwd=tmp_path, stdin="EAAb2")  # fmt: skip
    assert unknown.returncode == 3
    assert "no account named 'nobody'" in unknown.stderr
    nothing = run_cli("accounts", "update", "--name", "shop", env=env, cwd=tmp_path)
    assert nothing.returncode == 2
    assert "nothing to update" in nothing.stderr


def test_a_token_left_in_the_environment_is_not_rewritten_by_an_update_of_the_other(
    sqlite_url: str, tmp_path: Path
) -> None:
    """With ARCHIVER_IG_TOKEN set (e.g. in .env), `update --threads-token -` changes only the
    Threads token; with no token option at all, the environment's token is the update."""
    env = env_for(sqlite_url)
    add_shop(env, tmp_path)
    env["ARCHIVER_IG_TOKEN"] = NEW_TOKEN
    args = ["accounts", "update", "--id", "1", "--no-check"]
    threads_only = run_cli(*args, "--threads-token", "-", env=env, cwd=tmp_path,
                           stdin=f"{THREADS_TOKEN}\n")  # fmt: skip
    assert threads_only.returncode == 0, threads_only.stderr
    assert column(sqlite_url, "SELECT ig_token, threads_token FROM account") == (
        "EAAoldoldoldold1",
        THREADS_TOKEN,
    )
    from_env = run_cli(*args, env=env, cwd=tmp_path)
    assert from_env.returncode == 0, from_env.stderr
    assert column(sqlite_url, "SELECT ig_token FROM account") == (NEW_TOKEN,)


def test_a_facebook_login_token_has_its_expiry_stored_from_debug_token(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """`add` asks debug_token with the app token (META_APP_ID set): the expiry and data-access
    expiry are stored and printed at once, not a day later."""
    account = sim.world.add_account()
    env = sim_env(sqlite_url, sim, META_APP_ID=APP_ID, META_APP_SECRET=SIM_APP_SECRET)
    result = run_cli("accounts", "add", "--name", "shop", "--ig-user-id", account.ig_user_id,
                     "--ig-token", "-", env=env, cwd=tmp_path, stdin=account.token)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the Instagram token expires " in result.stdout
    assert ", data access until " in result.stdout
    expires, data_access, error = column(
        sqlite_url,
        "SELECT ig_token_expires_at, ig_data_access_expires_at, ig_token_check_error FROM account",
    )
    assert expires is not None
    assert data_access is not None
    assert error is None
    (call,) = sim.world.log.calls(kind="debug_token")
    assert call.account == APP_ID  # asked with the app token


def test_a_debug_token_that_will_not_answer_is_a_note_not_a_refusal(
    sqlite_url: str, sim: RunningSim, tmp_path: Path
) -> None:
    """No app token and a user without a role on the app: the account is added, the note
    says why its expiry is unknown and how to fix it, and the workers ask again later."""
    account = sim.world.add_account()
    env = sim_env(sqlite_url, sim)
    result = run_cli("accounts", "add", "--name", "shop", "--ig-user-id", account.ig_user_id,
                     "--ig-token", "-", env=env, cwd=tmp_path, stdin=account.token)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "token expiry not known yet: debug_token refused" in result.stderr
    assert "set META_APP_ID" in result.stderr
    assert account.token not in result.stdout + result.stderr
    assert column(sqlite_url, "SELECT ig_token_expires_at FROM account") == (None,)


@pytest.mark.anyio
async def test_a_token_debug_token_calls_dead_is_refused(sim: RunningSim, sqlite_url: str) -> None:
    """debug_token's `is_valid: false` is a refusal (exit 6) naming Meta's reason."""
    account = sim.world.add_account()
    sim.world.tokens.expire_token(account.token)
    settings = make_settings(
        sqlite_url, None, meta_app_id=APP_ID, meta_app_secret=SIM_APP_SECRET,
        **sim.settings_overrides(),
    )  # fmt: skip
    ig = IgAccount(account.ig_user_id, account.token, "facebook")
    async with open_clients(settings) as clients:
        with pytest.raises(MetaRefused, match="not valid: Error validating access token") as err:
            await meta_checks._debug(clients, settings, ig)
    assert account.token not in str(err.value)
