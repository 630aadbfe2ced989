"""Facebook Login token expiry from debug_token, run by `refresh_tokens` against the
simulator over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from archiver.status.as_text import ig_token_line
from metasim import Account as SimAccount
from metasim.world.tokens import APP_ID, APP_SECRET
from models.accounts import Account
from models.types import utcnow
from reports.coverage import account_statuses
from tests.metasim_fixtures import RunningSim
from tests.test_threads_jobs import account_of, threads_settings
from workers.captures.token_checks import CHECKED, LATER, REFUSED
from workers.captures.token_refresh import refresh_tokens
from workers.main import make_startup, shutdown
from workers.meta.api_errors import Transient
from workers.meta.graph_api import IgAccount
from workers.meta.token_info import parse_token_info
from workers.runtime.context import Context

APP = {"meta_app_id": APP_ID, "meta_app_secret": APP_SECRET}


@asynccontextmanager
async def worker_ctx(
    engine: Engine, redis_url: str, sim: RunningSim, **kw: Any
) -> AsyncIterator[Context]:
    """A worker's ctx (settings, engine, HTTP and Meta clients), without Redis pauses."""
    ctx: Context = {}
    await make_startup(threads_settings(engine, redis_url, sim, **kw))(ctx)
    try:
        yield ctx
    finally:
        await shutdown(ctx)


def add(engine: Engine, sim_account: SimAccount, *, login: str = "facebook") -> int:
    with Session(engine) as session:
        account = Account(
            name=f"shop{sim_account.ig_user_id[-4:]}",
            ig_user_id=sim_account.ig_user_id,
            ig_token=sim_account.token,
            login=login,
        )
        session.add(account)
        session.commit()
        assert account.id is not None
        return account.id


def checks(counts: dict[str, int]) -> tuple[int, int, int]:
    return counts[CHECKED], counts[REFUSED], counts[LATER]


@pytest.mark.anyio
async def test_debug_token_fills_expiry_and_data_access_expiry(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """The app token asks once a day: expires_at and data_access_expires_at are stored."""
    ig = sim.world.add_account(token_age_seconds=86400)
    account_id = add(engine, ig)
    token = sim.world.tokens.token(ig.token)
    assert token is not None
    assert token.expires_at is not None
    async with worker_ctx(engine, redis_url, sim, **APP) as ctx:
        first = await refresh_tokens(ctx)
        second = await refresh_tokens(ctx)
    assert (checks(first), checks(second)) == ((1, 0, 0), (0, 0, 0))
    found = account_of(engine, account_id)
    assert found.ig_token_expires_at == token.expires_at.replace(microsecond=0)
    expected = (token.issued_at + timedelta(days=90)).replace(microsecond=0)
    assert found.ig_data_access_expires_at == expected
    assert (found.ig_token_check_error, found.state) == (None, "active")
    (call,) = sim.world.log.calls(kind="debug_token")
    assert (call.account, call.params["access_token"], call.host) == (APP_ID, "***", "facebook")
    assert ig_token_line(
        account_statuses(engine, now=utcnow(), grace=timedelta(seconds=10))[0], utcnow()
    ).startswith("expires ")


@pytest.mark.anyio
async def test_a_token_without_expiry_is_shown_as_never_expiring(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """expires_at 0: no expiry stored but the check recorded, so status says `never`."""
    account_id = add(engine, sim.world.add_account(token_expires_at=None))
    (unknown,) = account_statuses(engine, now=utcnow(), grace=timedelta(seconds=10))
    assert ig_token_line(unknown, utcnow()) == "expiry unknown"
    async with worker_ctx(engine, redis_url, sim, **APP) as ctx:
        assert checks(await refresh_tokens(ctx)) == (1, 0, 0)
    found = account_of(engine, account_id)
    assert found.ig_token_expires_at is None
    assert found.ig_data_access_expires_at is not None
    (status,) = account_statuses(engine, now=utcnow(), grace=timedelta(seconds=10))
    assert ig_token_line(status, utcnow()).startswith("never expires (asked ")


@pytest.mark.anyio
async def test_without_an_app_id_a_developers_token_inspects_itself(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """No META_APP_ID: the token is its own access token, which Meta allows a developer."""
    ig = sim.world.add_account()
    sim.world.tokens.make_developer(ig.ig_user_id)
    account_id = add(engine, ig)
    async with worker_ctx(engine, redis_url, sim) as ctx:
        assert checks(await refresh_tokens(ctx)) == (1, 0, 0)
    assert account_of(engine, account_id).ig_token_expires_at is not None
    (call,) = sim.world.log.calls(kind="debug_token")
    assert call.account == ig.ig_user_id


@pytest.mark.anyio
async def test_a_refused_check_is_recorded_shown_and_asked_again_a_day_later(
    engine: Engine, redis_url: str, sim: RunningSim, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a developer and no app token: Meta's (#100) is kept as the reason, logged once,
    shown in status, and asked again only a day later; the account is not flagged."""
    ig = sim.world.add_account()
    account_id = add(engine, ig)
    with caplog.at_level(logging.WARNING):
        async with worker_ctx(engine, redis_url, sim) as ctx:
            first = await refresh_tokens(ctx)
            second = await refresh_tokens(ctx)
            with engine.begin() as conn:  # a day passes
                conn.execute(
                    sa.update(Account)
                    .where(sa.column("id") == account_id)
                    .values(ig_token_checked_at=utcnow() - timedelta(days=1, minutes=1))
                )
            third = await refresh_tokens(ctx)
    assert [checks(c) for c in (first, second, third)] == [(0, 1, 0), (0, 0, 0), (0, 1, 0)]
    found = account_of(engine, account_id)
    assert found.state == "active"
    assert found.ig_token_check_error is not None
    assert "META_APP_ID" in found.ig_token_check_error
    assert caplog.text.count("token expiry unknown") == 1
    assert ig.token not in caplog.text
    line = ig_token_line(
        account_statuses(engine, now=utcnow(), grace=timedelta(seconds=10))[0], utcnow()
    )
    assert line.startswith("expiry unknown (debug_token refused: (#100) You must provide")
    assert len(sim.world.log.calls(kind="debug_token")) == 2


@pytest.mark.anyio
async def test_a_dead_token_flags_the_account_once(
    engine: Engine, redis_url: str, sim: RunningSim, caplog: pytest.LogCaptureFixture
) -> None:
    """is_valid false: the expiry is stored and the account flagged for re-authorisation;
    a developer's expired token asking for itself gets 190 and is flagged the same way."""
    dead = sim.world.add_account()
    sim.world.tokens.expire_token(dead.token)
    own = sim.world.add_account()
    sim.world.tokens.make_developer(own.ig_user_id)
    sim.world.tokens.expire_token(own.token)
    dead_id, own_id = add(engine, dead), add(engine, own)
    with caplog.at_level(logging.WARNING):
        async with worker_ctx(engine, redis_url, sim, **APP) as ctx:
            assert checks(await refresh_tokens(ctx)) == (2, 0, 0)
        async with worker_ctx(engine, redis_url, sim) as ctx:
            with engine.begin() as conn:
                conn.execute(
                    sa.update(Account)
                    .where(sa.column("id") == own_id)
                    .values(state="active", ig_token_checked_at=None)
                )
            assert checks(await refresh_tokens(ctx)) == (0, 1, 0)
    flagged = account_of(engine, dead_id)
    assert flagged.state == "reauth_required"
    assert flagged.ig_token_expires_at is not None
    assert account_of(engine, own_id).state == "reauth_required"
    assert caplog.text.count("Meta reports the Facebook Login token dead") == 2
    assert caplog.text.count("the Facebook Login token is not valid") == 1
    assert dead.token not in caplog.text
    assert own.token not in caplog.text


@pytest.mark.anyio
async def test_a_wrong_app_secret_is_the_apps_problem_not_the_accounts(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """190 on the app token: the reason names the settings, the account stays active."""
    account_id = add(engine, sim.world.add_account())
    wrong = {"meta_app_id": APP_ID, "meta_app_secret": "another-secret-0123456789"}
    async with worker_ctx(engine, redis_url, sim, **wrong) as ctx:
        assert checks(await refresh_tokens(ctx)) == (0, 1, 0)
    found = account_of(engine, account_id)
    assert found.state == "active"
    assert "check META_APP_ID, META_APP_SECRET" in (found.ig_token_check_error or "")
    assert "another-secret" not in (found.ig_token_check_error or "")


@pytest.mark.anyio
async def test_a_throttled_check_is_asked_again_at_the_next_run(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """Code 4 on debug_token: nothing recorded, so the next hourly run asks again."""
    account_id = add(engine, sim.world.add_account())
    sim.world.faults.add(code=4, kind="debug_token", count=1)
    async with worker_ctx(engine, redis_url, sim, **APP) as ctx:
        first = await refresh_tokens(ctx)
        assert account_of(engine, account_id).ig_token_checked_at is None
        second = await refresh_tokens(ctx)
    assert (checks(first), checks(second)) == ((0, 0, 1), (1, 0, 0))


@pytest.mark.anyio
async def test_only_facebook_login_tokens_are_checked(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """Instagram Login tokens have their own refresh; debug_token is never asked for them,
    and the client refuses to."""
    add(engine, sim.world.add_account(login="instagram"), login="instagram")
    async with worker_ctx(engine, redis_url, sim, **APP) as ctx:
        assert checks(await refresh_tokens(ctx)) == (0, 0, 0)
        with pytest.raises(ValueError, match="Facebook Login"):
            await ctx["graph"].debug_token(IgAccount("1", "IGAAtoken", login="instagram"))
    assert sim.world.log.calls(kind="debug_token") == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"data": []},
        {"data": {"is_valid": True}},
        {"data": {"is_valid": True, "expires_at": "x"}},
    ],
)
def test_an_answer_without_the_figures_is_transient(body: dict[str, Any]) -> None:
    """No `data`, or a valid token without an integer expires_at: asked again, never read as
    a token that does not expire."""
    with pytest.raises(Transient, match="debug_token answered without"):
        parse_token_info(body)


def test_an_invalid_token_keeps_metas_reason() -> None:
    """is_valid false: the error message is kept; expires_at 0 means never."""
    info = parse_token_info(
        {"data": {"is_valid": False, "expires_at": 0, "error": {"message": "Session expired"}}}
    )
    assert (info.is_valid, info.expires_at, info.error) == (False, None, "Session expired")
