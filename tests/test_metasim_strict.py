"""The simulator as strict as Meta: versions, hosts, permissions, rolling budgets, blocks
that calls extend, usage header shapes and garbage answers; and for each, a client that is
lax fails while the right call succeeds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from metasim import Account
from tests.metasim_fixtures import RunningSim
from workers.meta.api_errors import AuthError, ClientError
from workers.meta.graph_api import GraphClient, IgAccount
from workers.meta.threads_api import ThreadsAccount, ThreadsClient
from workers.meta.transport import MetaTransport

V = "v25.0"
CANNOT_PARSE = "Invalid OAuth access token - Cannot parse access token"


@pytest.fixture
def http(sim: RunningSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5.0) as client:
        yield client


@pytest.fixture
def account(sim: RunningSim) -> Account:
    return sim.world.add_account()


def get(http: httpx.Client, path: str, token: str, **params: Any) -> httpx.Response:
    return http.get(path, params={**params, "access_token": token})


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


# --- versions ------------------------------------------------------------------------------


def test_unversioned_call_is_refused(http: httpx.Client, account: Account) -> None:
    """A Graph path without a version is a 400 (code 2500); token endpoints need none."""
    bare = get(http, f"/facebook/{account.ig_user_id}/stories", account.token)
    assert (bare.status_code, error(bare)["code"]) == (400, 2500)
    assert "version" in error(bare)["message"]
    pinned = get(http, f"/facebook/{V}/{account.ig_user_id}/stories", account.token)
    assert pinned.status_code == 200
    assert pinned.headers["facebook-api-version"] == V


def test_unknown_version_is_unknown_path(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """A version that never existed, or another host's, reads as a path Meta does not know."""
    path = f"{account.ig_user_id}/stories"
    for version in ("v99.0", "v1.0", "25.0"):
        body = error(get(http, f"/facebook/{version}/{path}", account.token))
        assert body["code"] == 2500
    assert error(get(http, f"/facebook/v99.0/{path}", account.token))["message"] == (
        f"Unknown path components: /{path}"
    )
    alone = error(get(http, "/facebook/v99.0", account.token))
    assert (alone["code"], alone["error_subcode"]) == (100, 33)  # "v99.0" read as an object
    user = sim.world.add_threads_user()
    assert error(get(http, f"/threads/{V}/me", user.token))["code"] == 2500
    assert get(http, "/threads/v1.0/me", user.token).status_code == 200


def test_ended_version_is_served_as_the_oldest(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """A version past its end is answered by the oldest available one, and says so."""
    response = get(http, f"/facebook/v17.0/{account.ig_user_id}/stories", account.token)
    assert response.status_code == 200
    assert response.headers["facebook-api-version"] == "v22.0"
    assert sim.world.log.calls()[-1].version == "v17.0"


@pytest.fixture
async def aio() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


def graph(
    sim: RunningSim,
    http: httpx.AsyncClient,
    version: str = V,
    *,
    facebook_url: str | None = None,
    instagram_url: str | None = None,
) -> GraphClient:
    return GraphClient(
        MetaTransport(http, backoff_seconds=0.01),
        facebook_url=facebook_url or sim.facebook_url,
        instagram_url=instagram_url or sim.instagram_url,
        version=version,
    )


@pytest.mark.anyio
async def test_client_with_a_wrong_version_fails_and_the_pinned_one_works(
    sim: RunningSim, aio: httpx.AsyncClient, account: Account
) -> None:
    """A client pinned to a version Meta never had gets ClientError; v25.0 / v1.0 work."""
    creds = IgAccount(account.ig_user_id, account.token)
    with pytest.raises(ClientError) as caught:
        await graph(sim, aio, "v99.0").list_stories(creds)
    assert caught.value.code == 2500
    assert await graph(sim, aio).list_stories(creds) == []
    user = sim.world.add_threads_user()
    profile = ThreadsAccount(user.id, user.token)
    with pytest.raises(ClientError):
        await ThreadsClient(MetaTransport(aio), base_url=sim.threads_url, version=V).me(profile)
    client = ThreadsClient(MetaTransport(aio), base_url=sim.threads_url)
    assert (await client.me(profile))["id"] == user.id


# --- hosts and tokens ----------------------------------------------------------------------


def test_token_must_match_its_host(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """Facebook Login tokens parse on graph.facebook.com only, Instagram Login tokens on
    graph.instagram.com only: elsewhere 190 "Cannot parse access token"."""
    iglogin = sim.world.add_account(login="instagram")
    user = sim.world.add_threads_user()
    wrong = [
        (f"/instagram/{V}/{account.ig_user_id}", account.token),
        (f"/facebook/{V}/{iglogin.ig_user_id}", iglogin.token),
        (f"/threads/{V}/{iglogin.ig_user_id}", iglogin.token),
        (f"/facebook/{V}/{user.id}", user.token),
    ]
    for path, token in wrong:
        body = error(get(http, path, token))
        assert (body["code"], body["message"]) == (190, CANNOT_PARSE)
        assert "error_subcode" not in body
    assert get(http, f"/facebook/{V}/{account.ig_user_id}", account.token).status_code == 200
    assert get(http, f"/instagram/{V}/{iglogin.ig_user_id}", iglogin.token).status_code == 200


@pytest.mark.anyio
async def test_client_on_the_wrong_host_is_an_auth_error(
    sim: RunningSim, aio: httpx.AsyncClient, account: Account
) -> None:
    """Hosts swapped: both login types fail with AuthError; the right hosts work."""
    swapped = graph(sim, aio, facebook_url=sim.instagram_url, instagram_url=sim.facebook_url)
    iglogin = sim.world.add_account(login="instagram")
    for acct in (account, iglogin):
        creds = IgAccount(acct.ig_user_id, acct.token, acct.login)
        with pytest.raises(AuthError) as caught:
            await swapped.list_stories(creds)
        assert caught.value.code == 190
        assert await graph(sim, aio).list_stories(creds) == []


# --- permissions ---------------------------------------------------------------------------


def test_permission_errors_on_demand(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """deny(): (#10) or (#200) for one account and route kind, until allow()."""
    media = sim.world.add_story(account.ig_user_id).id
    insights = f"/facebook/{V}/{media}/insights"
    sim.world.budgets.deny(account.ig_user_id, kind="insights")
    denied = get(http, insights, account.token, metric="reach")
    assert denied.status_code == 400
    assert error(denied)["message"] == "(#10) Application does not have permission for this action"
    assert get(http, f"/facebook/{V}/{account.ig_user_id}/stories", account.token).is_success
    other = sim.world.add_account()
    theirs = sim.world.add_story(other.ig_user_id).id
    assert get(http, f"/facebook/{V}/{theirs}/insights", other.token, metric="reach").is_success
    assert sim.world.budgets.allow(account.ig_user_id) == 1
    sim.world.budgets.deny(account.ig_user_id, code=200)
    missing = get(http, insights, account.token, metric="reach")
    assert (missing.status_code, error(missing)["code"]) == (403, 200)
    assert error(missing)["message"] == "(#200) Requires instagram_manage_insights permission"
    sim.world.budgets.allow(account.ig_user_id)
    assert get(http, insights, account.token, metric="reach").is_success


def test_permission_errors_for_a_threads_profile(sim: RunningSim, http: httpx.Client) -> None:
    """A Threads profile can lose threads_manage_insights: its insights fail, /me works."""
    user = sim.world.add_threads_user()
    sim.world.budgets.deny(user.id, code=200, kind="threads_insights")
    insights = get(http, f"/threads/v1.0/{user.id}/threads_insights", user.token, metric="views")
    assert error(insights)["message"] == "(#200) Requires threads_manage_insights permission"
    assert get(http, "/threads/v1.0/me", user.token).status_code == 200


def test_permission_control_api(sim: RunningSim, http: httpx.Client) -> None:
    """POST /_sim/permissions denies (IG Login wording by default), DELETE grants again."""
    iglogin = sim.world.add_account(login="instagram")
    media = sim.world.add_story(iglogin.ig_user_id).id
    spec = {"account": iglogin.ig_user_id, "code": 200, "kind": "insights"}
    assert http.post("/_sim/permissions", json=spec).status_code == 200
    body = error(get(http, f"/instagram/{V}/{media}/insights", iglogin.token, metric="reach"))
    assert body["message"] == "(#200) Requires instagram_business_manage_insights permission"
    assert http.post("/_sim/permissions", json={**spec, "code": 17}).status_code == 400
    assert http.post("/_sim/permissions", json={**spec, "account": "404"}).status_code == 404
    other_kind = {"account": iglogin.ig_user_id, "kind": "stories"}
    assert http.delete("/_sim/permissions", params=other_kind).json() == {"removed": 0}
    gone = http.delete("/_sim/permissions", params={"account": iglogin.ig_user_id})
    assert gone.json() == {"removed": 1}
    assert get(http, f"/instagram/{V}/{media}/insights", iglogin.token, metric="reach").is_success


# --- budgets and blocks --------------------------------------------------------------------


def test_budget_is_4800_per_impression_by_default_formula(sim: RunningSim) -> None:
    """Meta's BUC formula: an account's calls per 24 h are 4800 x its impressions."""
    assert sim.world.config.window_minutes == 24 * 60
    sized = sim.world.add_account(impressions=3)
    assert sized.calls_allowed(sim.world.config.default_budget) == 14400
    sim.world.budgets.set_budget(sized.ig_user_id, 7)
    assert sized.calls_allowed(sim.world.config.default_budget) == 7
    plain = sim.world.add_account()
    assert plain.calls_allowed(sim.world.config.default_budget) == 4800


def regain(response: httpx.Response, account: Account) -> int:
    (entry,) = json.loads(response.headers["x-business-use-case-usage"])[account.ig_user_id]
    return int(entry["estimated_time_to_regain_access"])


def test_rolling_budget_and_calls_during_the_block_extend_it(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """Over the rolling budget: 80002 with the minutes until enough calls leave the window;
    a call during the block counts too and pushes that time out; silence ends it."""
    sim.world.configure(window_minutes=10)  # ten one-second "minutes"
    sim.world.budgets.set_budget(account.ig_user_id, 2)
    path = f"/facebook/{V}/{account.ig_user_id}/stories"
    assert get(http, path, account.token).status_code == 200
    sim.world.advance(3)
    assert get(http, path, account.token).status_code == 200
    sim.world.advance(3)
    blocked = get(http, path, account.token)
    assert error(blocked)["code"] == 80002
    first = regain(blocked, account)
    assert first in (7, 8)  # the second call (3 s ago) must leave the 10 s window
    sim.world.advance(2)
    again = get(http, path, account.token)
    assert error(again)["code"] == 80002
    assert regain(again, account) > first - 2  # the block now ends later than first said
    sim.world.advance(regain(again, account) + 0.5)
    assert get(http, path, account.token).status_code == 200


def test_app_block_on_demand_and_calls_extend_it(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """block(): code 4 for every account of the app for N s; each call restarts the N s;
    the Threads app is not blocked."""
    other, user = sim.world.add_account(), sim.world.add_threads_user()
    sim.world.budgets.block(5)
    path = f"/facebook/{V}/{account.ig_user_id}/stories"
    answer = get(http, path, account.token)
    assert (answer.status_code, error(answer)["code"]) == (403, 4)
    assert json.loads(answer.headers["x-app-usage"])["call_count"] == 100
    sim.world.advance(3)
    assert error(get(http, f"/facebook/{V}/{other.ig_user_id}", other.token))["code"] == 4
    assert get(http, "/threads/v1.0/me", user.token).status_code == 200
    sim.world.advance(4)  # 7 s after the block began, 4 s after the last call
    assert error(get(http, path, account.token))["code"] == 4
    sim.world.advance(5.1)
    assert get(http, path, account.token).status_code == 200
    assert sim.world.budgets.blocks() == {}


def test_blocks_over_the_control_api(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """POST /_sim/blocks blocks the app or one account (80002), GET lists, DELETE clears."""
    other = sim.world.add_account()
    http.post("/_sim/blocks", json={"seconds": 60, "account": other.ig_user_id})
    assert get(http, f"/facebook/{V}/{account.ig_user_id}", account.token).status_code == 200
    answer = get(http, f"/facebook/{V}/{other.ig_user_id}", other.token)
    assert error(answer)["code"] == 80002
    assert regain(answer, other) == 60
    listed = http.post("/_sim/blocks", json={"seconds": 30, "extend_seconds": 1}).json()
    assert set(listed["blocks"]) == {"app:instagram", other.ig_user_id}
    assert listed["blocks"]["app:instagram"]["extend_seconds"] == 1
    assert http.post("/_sim/blocks", json={"seconds": 1, "platform": "x"}).status_code == 400
    assert http.delete("/_sim/blocks").json() == {"ok": True}
    assert http.get("/_sim/blocks").json() == {"blocks": {}}
    assert get(http, f"/facebook/{V}/{other.ig_user_id}", other.token).status_code == 200


# --- headers and garbage -------------------------------------------------------------------


def test_usage_header_shape_follows_the_host(sim: RunningSim, http: httpx.Client) -> None:
    """graph.instagram.com's X-App-Usage says call_volume/cpu_time/total_time;
    graph.facebook.com's call_count/total_cputime/total_time."""
    fb, iglogin = sim.world.add_account(), sim.world.add_account(login="instagram")
    on_fb = get(http, f"/facebook/{V}/{fb.ig_user_id}", fb.token)
    on_ig = get(http, f"/instagram/{V}/{iglogin.ig_user_id}", iglogin.token)
    assert set(json.loads(on_fb.headers["x-app-usage"])) == {
        "call_count",
        "total_cputime",
        "total_time",
    }
    assert set(json.loads(on_ig.headers["x-app-usage"])) == {
        "call_volume",
        "cpu_time",
        "total_time",
    }
    assert iglogin.ig_user_id in json.loads(on_ig.headers["x-business-use-case-usage"])


def test_garbage_200_on_demand(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """A fault can answer 200 with a body that is not JSON, or JSON that is no object."""
    path = f"/facebook/{V}/{account.ig_user_id}"
    sim.world.faults.add(garbage="not_json")
    broken = get(http, path, account.token)
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        broken.json()
    sim.world.faults.add(garbage="not_object")
    assert get(http, path, account.token).json() == []
    assert get(http, path, account.token).json() == {"id": account.ig_user_id}
    refused = http.post("/_sim/faults", json={"garbage": "confetti"})
    assert refused.status_code == 400
