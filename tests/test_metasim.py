"""The Meta simulator over real HTTP: Instagram routes, Meta's errors, throttling, faults."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from metasim import World
from metasim.world import insights
from metasim.world.entities import Account
from tests.metasim_fixtures import RunningSim, running_metasim

V = "v25.0"
PLAIN = (
    "views",
    "reach",
    "replies",
    "shares",
    "total_interactions",
    "follows",
    "profile_visits",
    "link_clicks",
    "reposts",
)
NAV = "story_navigation_action_type"


@pytest.fixture
def http(sim: RunningSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5.0) as client:
        yield client


@pytest.fixture
def account(sim: RunningSim) -> Account:
    return sim.world.add_account(username="shop")


def get(http: httpx.Client, path: str, token: str | None, **params: Any) -> httpx.Response:
    if token is not None:
        params["access_token"] = token
    return http.get(path, params=params)


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["fbtrace_id"]
    return dict(body["error"])


def story_id(world: World, account: Account, **spec: Any) -> str:
    return world.add_story(account.ig_user_id, **spec).id


def test_stories_paginate_over_three_pages(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """/stories pages through live stories newest first; `next` is absent on the last page."""
    sim.world.configure(page_size=3)
    ids = [story_id(sim.world, account, age_seconds=600 * i) for i in range(8)]
    url: str | None = f"/{V}/{account.ig_user_id}/stories"
    pages: list[list[str]] = []
    params: dict[str, Any] | None = {"fields": "id,timestamp", "access_token": account.token}
    while url is not None:
        body = http.get(url, params=params).json()
        params = None  # `next` carries the query (httpx would replace it with given params)
        pages.append([item["id"] for item in body["data"]])
        assert set(body["paging"]["cursors"]) == {"before", "after"}
        url = body["paging"].get("next")
        assert url is None or url.startswith(sim.url + "/")
    assert pages == [ids[0:3], ids[3:6], ids[6:8]]


def test_media_fields(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """A story's fields come back as requested, the timestamp in Meta's +0000 format."""
    media = story_id(sim.world, account, caption="hello", media_type="VIDEO")
    fields = "id,media_type,media_product_type,permalink,timestamp,caption,username"
    body = get(http, f"/{V}/{media}", account.token, fields=fields).json()
    assert set(body) == set(fields.split(","))
    assert (body["media_type"], body["media_product_type"]) == ("VIDEO", "STORY")
    assert (body["username"], body["caption"]) == ("shop", "hello")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", body["timestamp"])
    bad = get(http, f"/{V}/{media}", account.token, fields="id,nonsense")
    assert bad.status_code == 400
    assert error(bad)["code"] == 100
    assert "nonsense" in error(bad)["message"]


def test_plain_insights_shape(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """Plain story metrics: Meta's item shape, lifetime period, values equal total_value."""
    media = story_id(sim.world, account, age_seconds=3 * 3600)
    response = get(http, f"/{V}/{media}/insights", account.token, metric=",".join(PLAIN))
    assert response.status_code == 200
    data = response.json()["data"]
    assert [item["name"] for item in data] == list(PLAIN)
    expected = sim.world.story_values(media)
    for item in data:
        assert set(item) == {
            "name",
            "period",
            "values",
            "title",
            "description",
            "total_value",
            "id",
        }
        assert item["period"] == "lifetime"
        assert item["values"] == [{"value": item["total_value"]["value"]}]
        assert item["id"] == f"{media}/insights/{item['name']}/lifetime"
        assert abs(item["total_value"]["value"] - expected[item["name"]]) <= 1
    values = {item["name"]: item["total_value"]["value"] for item in data}
    assert values["views"] >= values["reach"] > 0


def test_navigation_breakdown_sums_to_total(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """navigation by story_navigation_action_type: four lowercase actions summing to the total."""
    media = story_id(sim.world, account, age_seconds=5 * 3600)
    body = get(
        http, f"/{V}/{media}/insights", account.token, metric="navigation", breakdown=NAV
    ).json()
    (item,) = body["data"]
    (breakdown,) = item["total_value"]["breakdowns"]
    assert breakdown["dimension_keys"] == [NAV]
    results = {r["dimension_values"][0]: r["value"] for r in breakdown["results"]}
    assert list(results) == ["tap_forward", "tap_back", "tap_exit", "swipe_forward"]
    assert sum(results.values()) == item["total_value"]["value"] > 0


def test_profile_activity_breakdown(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """profile_activity by action_type: lowercase actions (zeros left out) summing to the total."""
    finals = {
        "pa:bio_link_clicked": 40,
        "pa:email": 10,
        "pa:call": 0,
        "pa:direction": 0,
        "pa:other": 5,
        "pa:text": 0,
    }
    media = story_id(sim.world, account, age_seconds=86000, finals=finals)
    body = get(
        http,
        f"/{V}/{media}/insights",
        account.token,
        metric="profile_activity",
        breakdown="action_type",
    ).json()
    (item,) = body["data"]
    (breakdown,) = item["total_value"]["breakdowns"]
    results = {r["dimension_values"][0]: r["value"] for r in breakdown["results"]}
    assert set(results) == {"bio_link_clicked", "email", "other"}
    assert set(results) <= set(insights.PROFILE_ACTIONS)
    assert sum(results.values()) == item["total_value"]["value"] > 50


@pytest.mark.parametrize(
    "metric", ["impressions", "taps_forward", "taps_back", "exits", "plays", "video_views"]
)
def test_deprecated_metric_is_error_100(
    sim: RunningSim, http: httpx.Client, account: Account, metric: str
) -> None:
    """A deprecated metric fails the call with (#100) naming that metric only."""
    media = story_id(sim.world, account)
    response = get(http, f"/{V}/{media}/insights", account.token, metric=f"reach,{metric}")
    assert response.status_code == 400
    body = error(response)
    assert (body["code"], body["type"]) == (100, "OAuthException")
    assert metric in body["message"]
    assert "no longer supported" in body["message"]
    assert "reach" not in body["message"]


def test_invalid_metric_lists_the_valid_ones(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """An unknown metric name: (#100) metric[i] must be one of ... (valid story metrics)."""
    media = story_id(sim.world, account)
    body = error(get(http, f"/{V}/{media}/insights", account.token, metric="reach,bogus"))
    assert body["code"] == 100
    assert "metric[1] must be one of the following values: views, reach" in body["message"]
    saved = error(get(http, f"/{V}/{media}/insights", account.token, metric="saved"))
    assert "does not support the saved metric" in saved["message"]


def test_breakdown_mixed_with_plain_metric_is_unknown_error(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """A breakdown asked with a metric that does not support it: "An unknown error ..."."""
    media = story_id(sim.world, account)
    response = get(
        http, f"/{V}/{media}/insights", account.token, metric="reach,navigation", breakdown=NAV
    )
    assert response.status_code == 500
    body = error(response)
    assert (body["code"], body["message"]) == (1, "An unknown error has occurred.")


def test_few_viewers_is_error_10(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """A story seen by fewer than 5 accounts: (#10) Not enough viewers."""
    media = story_id(sim.world, account, viewers=4, age_seconds=7200)
    response = get(http, f"/{V}/{media}/insights", account.token, metric="reach")
    assert response.status_code == 400
    body = error(response)
    assert body["code"] == 10
    assert body["message"] == "(#10) Not enough viewers for the media to show insights"


def test_expired_story_has_empty_data_and_leaves_the_list(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """24 h after posting: insights answer {"data": []} and /stories no longer lists it."""
    media = story_id(sim.world, account, age_seconds=86400 - 30)
    listing = f"/{V}/{account.ig_user_id}/stories"
    assert [s["id"] for s in get(http, listing, account.token).json()["data"]] == [media]
    sim.world.advance(31)
    assert get(http, listing, account.token).json() == {"data": []}
    response = get(http, f"/{V}/{media}/insights", account.token, metric="reach,views")
    assert (response.status_code, response.json()) == (200, {"data": []})
    assert get(http, f"/{V}/{media}", account.token).json() == {"id": media}


def test_token_errors(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """Unknown token 190/467, expired 190/463, missing 104, another account's token 100/33."""
    path = f"/{V}/{account.ig_user_id}/stories"
    assert get(http, path, None).json()["error"]["code"] == 104
    invalid = error(get(http, path, "EAAGnot-a-token"))
    assert (invalid["code"], invalid["error_subcode"]) == (190, 467)
    assert invalid["message"].startswith("Error validating access token: ")
    other = sim.world.add_account()
    foreign = error(get(http, path, other.token))
    assert (foreign["code"], foreign["error_subcode"]) == (100, 33)
    sim.world.tokens.expire_token(account=account.ig_user_id)
    response = get(http, path, account.token)
    expired = error(response)
    assert (response.status_code, expired["code"], expired["error_subcode"]) == (400, 190, 463)


def _usage(response: httpx.Response, account: str) -> dict[str, Any]:
    app = json.loads(response.headers["x-app-usage"])
    assert set(app) == {"call_count", "total_time", "total_cputime"}
    (entry,) = json.loads(response.headers["x-business-use-case-usage"])[account]
    assert entry["type"] == "instagram"
    return dict(entry)


def test_usage_headers_on_every_answer_and_rising(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """Both usage headers on every answer, errors included; call_count climbs with each call."""
    sim.world.budgets.set_budget(account.ig_user_id, 10)
    media = story_id(sim.world, account)
    answers = [
        get(http, f"/{V}/{account.ig_user_id}/stories", account.token),
        get(http, f"/{V}/{media}/insights", account.token, metric="impressions"),
        get(http, f"/{V}/{media}", account.token),
        get(http, f"/{V}/{media}/insights", account.token, metric="reach"),
    ]
    assert [r.status_code for r in answers] == [200, 400, 200, 200]
    counts = [_usage(r, account.ig_user_id)["call_count"] for r in answers]
    assert counts == [10, 20, 30, 40]
    bad = get(http, f"/{V}/{media}", "EAAGbad")
    assert "x-app-usage" in bad.headers
    assert _usage(bad, account.ig_user_id)["call_count"] == 40


def test_budget_exhausted_gives_80002_until_the_window_passes(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """Over the account budget: 400 code 80002, is_transient, regain time > 0; later it heals."""
    sim.world.configure(window_minutes=60)  # "minutes" of one second: a 60 s window
    sim.world.budgets.set_budget(account.ig_user_id, 3)
    path = f"/{V}/{account.ig_user_id}/stories"
    assert [get(http, path, account.token).status_code for _ in range(3)] == [200] * 3
    response = get(http, path, account.token)
    body = error(response)
    assert (response.status_code, body["code"], body["is_transient"]) == (400, 80002, True)
    usage = _usage(response, account.ig_user_id)
    assert usage["call_count"] == 100
    assert usage["estimated_time_to_regain_access"] >= 1
    sim.world.advance(61)  # past the window, on the world clock
    assert get(http, path, account.token).status_code == 200


def test_app_budget_gives_code_4(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """Over the app's budget every account gets (#4) Application request limit reached."""
    sim.world.configure(app_budget=2)
    path = f"/{V}/{account.ig_user_id}/stories"
    codes = [get(http, path, account.token).status_code for _ in range(3)]
    assert codes == [200, 200, 403]
    assert json.loads(get(http, path, account.token).headers["x-app-usage"])["call_count"] == 100


FAULTS = [
    ({"status": 500}, 500, 1),
    ({"status": 503}, 503, 2),
    ({"code": 2}, 503, 2),
    ({"code": 4}, 403, 4),
    ({"code": 17}, 400, 17),
    ({"code": 32}, 400, 32),
    ({"code": 613}, 400, 613),
    ({"code": 80002, "regain_minutes": 3}, 400, 80002),
    ({"status": 429}, 429, 4),
]


@pytest.mark.parametrize(("spec", "status", "code"), FAULTS)
def test_injected_faults_hit_the_next_n_calls(
    sim: RunningSim,
    http: httpx.Client,
    account: Account,
    spec: dict[str, Any],
    status: int,
    code: int,
) -> None:
    """A fault answers the next N matching calls with Meta's body for it, then stops."""
    fault = sim.world.faults.add(count=2, **spec)
    path = f"/{V}/{account.ig_user_id}/stories"
    answers = [get(http, path, account.token) for _ in range(3)]
    assert [r.status_code for r in answers] == [status, status, 200]
    assert error(answers[0])["code"] == code
    assert error(answers[0])["is_transient"] is True
    assert [c.fault for c in sim.world.log.calls()] == [fault.id, fault.id, None]
    if code == 80002:
        assert _usage(answers[0], account.ig_user_id)["estimated_time_to_regain_access"] == 3


def test_bad_gateway_fault_is_not_json(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """HTTP 502 comes from Meta's edge as an HTML page, not a Graph error body."""
    sim.world.faults.add(status=502)
    response = get(http, f"/{V}/{account.ig_user_id}/stories", account.token)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "x-app-usage" in response.headers


def test_faults_scoped_by_account_kind_and_duration(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """A fault can target one account and one route kind, for a span of (world) time."""
    other = sim.world.add_account()
    media, theirs = story_id(sim.world, account), story_id(sim.world, other)
    sim.world.faults.add(code=1, account=account.ig_user_id, kind="insights", seconds=60)
    mine = f"/{V}/{media}/insights"
    assert get(http, mine, account.token, metric="reach").status_code == 500
    assert get(http, mine, account.token, metric="reach").status_code == 500
    assert get(http, f"/{V}/{theirs}/insights", other.token, metric="reach").status_code == 200
    assert get(http, f"/{V}/{account.ig_user_id}/stories", account.token).status_code == 200
    sim.world.advance(61)
    assert get(http, mine, account.token, metric="reach").status_code == 200


def test_slow_fault_delays_the_answer() -> None:
    """A delay fault holds the answer; a client with a shorter timeout gives up."""
    # A server of its own: the abandoned slow answer must not land in another test's log.
    with running_metasim() as own, httpx.Client(base_url=own.url) as http:
        account = own.world.add_account()
        path = f"/{V}/{account.ig_user_id}/stories"
        own.world.faults.add(delay=0.3)
        started = time.perf_counter()
        assert get(http, path, account.token).status_code == 200
        assert time.perf_counter() - started >= 0.3
        own.world.faults.add(delay=1.0)
        with pytest.raises(httpx.ReadTimeout):
            http.get(path, params={"access_token": account.token}, timeout=0.2)


def test_counters_grow_with_age(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """Same story at growing ages (posted earlier, or the clock moved): counters never fall."""
    ages = [300, 3600, 4 * 3600, 12 * 3600, 23 * 3600]
    ids = [story_id(sim.world, account, age_seconds=a, seed=7, viewers=2000) for a in ages]

    def reach_views(media: str) -> tuple[int, int]:
        data = get(http, f"/{V}/{media}/insights", account.token, metric="reach,views").json()
        return data["data"][0]["values"][0]["value"], data["data"][1]["values"][0]["value"]

    seen = [reach_views(media) for media in ids]
    reach, views = [r for r, _ in seen], [v for _, v in seen]
    assert reach == sorted(reach)
    assert views == sorted(views)
    assert reach[0] < reach[-1] <= 2000
    before = reach_views(ids[0])
    sim.world.advance(3600)
    assert reach_views(ids[0]) > before


def test_connected_threads_user(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """connected_threads_user names the linked Threads user, or has empty data."""
    path = f"/{V}/{account.ig_user_id}/connected_threads_user"
    assert get(http, path, account.token, fields="threads_user_id").json() == {"data": []}
    user = sim.world.add_threads_user(ig_user_id=account.ig_user_id)
    body = get(http, path, account.token, fields="threads_user_id").json()
    assert body == {"data": [{"threads_user_id": user.id}]}


def test_instagram_token_refresh(sim: RunningSim, http: httpx.Client) -> None:
    """ig_refresh_token: only IG Login tokens >= 24 h old and unexpired; the new one works."""
    ig = sim.world.add_account(login="instagram", token_age_seconds=2 * 86400)
    old = ig.token
    url = f"{sim.instagram_url}/refresh_access_token"
    body = get(http, url, old, grant_type="ig_refresh_token").json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 5183944
    assert body["access_token"] != old
    assert sim.world.account(ig.ig_user_id).token == body["access_token"]
    assert get(http, f"/{V}/{ig.ig_user_id}/stories", body["access_token"]).status_code == 200
    assert sim.world.log.calls()[-1].host is None
    assert sim.world.log.calls()[0].host == "instagram"
    young = error(get(http, url, body["access_token"], grant_type="ig_refresh_token"))
    assert young["code"] == 190
    sim.world.tokens.expire_token(old)
    expired = error(get(http, url, old, grant_type="ig_refresh_token"))
    assert (expired["code"], expired["error_subcode"]) == (190, 463)
    fb = sim.world.add_account(token_age_seconds=2 * 86400)
    wrong = error(get(http, url, fb.token, grant_type="ig_refresh_token"))
    assert wrong["code"] == 190
    assert wrong["message"] == "Invalid OAuth access token - Cannot parse access token"


def test_call_log_redacts_tokens(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """Every call is logged (path, params, account, status) without its token."""
    media = story_id(sim.world, account)
    get(http, f"{sim.facebook_url}/{V}/{media}/insights", account.token, metric="reach")
    (call,) = sim.world.log.calls()
    assert (call.kind, call.host, call.version, call.account) == (
        "insights",
        "facebook",
        V,
        account.ig_user_id,
    )
    assert call.params == {"metric": "reach", "access_token": "***"}
    assert call.status == 200
    assert call.token_serial == sim.world.tokens.token(account.token).serial  # type: ignore[union-attr]
    assert account.token not in http.get("/_sim/calls").text
