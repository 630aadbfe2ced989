"""The Meta simulator over real HTTP: GET /debug_token, for the app or a developer only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from metasim.api.instagram import NOT_ALLOWED
from metasim.world.tokens import APP_ID, app_token
from tests.metasim_fixtures import RunningSim

V = "v25.0"


@pytest.fixture
def http(sim: RunningSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.facebook_url, timeout=5.0) as client:
        yield client


def debug(http: httpx.Client, access: str, token: str | None) -> httpx.Response:
    params = {"access_token": access} | ({"input_token": token} if token else {})
    return http.get(f"/{V}/debug_token", params=params)


def data(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


def test_the_app_token_reads_expiry_and_data_access_expiry(
    sim: RunningSim, http: httpx.Client
) -> None:
    """expires_at and data_access_expires_at (90 days after issue) as Unix times."""
    account = sim.world.add_account(token_age_seconds=86400)
    token = sim.world.tokens.token(account.token)
    assert token is not None
    assert token.expires_at is not None
    found = data(debug(http, app_token(), account.token))
    assert (found["app_id"], found["type"], found["is_valid"]) == (APP_ID, "USER", True)
    assert found["expires_at"] == int(token.expires_at.timestamp())
    assert found["data_access_expires_at"] == int(
        (token.issued_at + timedelta(days=90)).timestamp()
    )
    (call,) = sim.world.log.calls(kind="debug_token")
    assert (call.host, call.params["access_token"], call.account) == ("facebook", "***", APP_ID)


def test_a_token_that_never_expires_says_zero(sim: RunningSim, http: httpx.Client) -> None:
    """A long-lived Page token: expires_at 0."""
    account = sim.world.add_account(token_expires_at=None)
    assert data(debug(http, app_token(), account.token))["expires_at"] == 0


def test_a_dead_token_is_an_answer_not_an_error(sim: RunningSim, http: httpx.Client) -> None:
    """An expired input token: is_valid false with error 190/463; an unknown one: 190."""
    account = sim.world.add_account()
    sim.world.tokens.expire_token(account.token)
    found = data(debug(http, app_token(), account.token))
    assert found["is_valid"] is False
    assert (found["error"]["code"], found["error"]["subcode"]) == (190, 463)
    unknown = data(debug(http, app_token(), "EAAGnot-a-token-0123456789"))
    assert (unknown["is_valid"], unknown["error"]["code"]) == (False, 190)


def test_only_a_developers_user_token_may_inspect(sim: RunningSim, http: httpx.Client) -> None:
    """A user token inspects itself only when its user has a role on the app; otherwise, or
    without input_token, Meta's (#100)."""
    stranger = sim.world.add_account()
    refused = debug(http, stranger.token, stranger.token)
    assert refused.status_code == 400
    assert (refused.json()["error"]["code"], refused.json()["error"]["message"]) == (
        100,
        NOT_ALLOWED,
    )
    sim.world.tokens.make_developer(stranger.ig_user_id)
    assert data(debug(http, stranger.token, stranger.token))["is_valid"] is True
    assert debug(http, app_token(), None).json()["error"]["code"] == 100


def test_a_wrong_app_secret_is_not_a_token(sim: RunningSim, http: httpx.Client) -> None:
    """`{app-id}|{other secret}` is refused like any invalid token (190/467)."""
    account = sim.world.add_account()
    body = debug(http, f"{APP_ID}|not-the-secret", account.token).json()["error"]
    assert (body["code"], body["error_subcode"]) == (190, 467)
