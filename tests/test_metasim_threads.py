"""The Meta simulator over real HTTP: Threads routes (listing, insights, token refresh)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from metasim import ThreadsUser
from metasim.world.insights import pacific_day_start
from tests.metasim_fixtures import RunningSim

V = "v1.0"
SINCE_FLOOR = 1712991600


@pytest.fixture
def http(sim: RunningSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.threads_url, timeout=5.0) as client:
        yield client


@pytest.fixture
def user(sim: RunningSim) -> ThreadsUser:
    account = sim.world.add_account()
    return sim.world.add_threads_user(
        ig_user_id=account.ig_user_id,
        followers_count=1234,
        links=["https://example.com/a", "https://example.com/b"],
    )


def get(http: httpx.Client, path: str, token: str, **params: Any) -> httpx.Response:
    return http.get(path, params={**params, "access_token": token})


def stamp(moment: datetime) -> int:
    return int(moment.timestamp())


def error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400
    return dict(response.json()["error"])


def test_listing_over_100_posts_pages_by_100(
    sim: RunningSim, http: httpx.Client, user: ThreadsUser
) -> None:
    """/threads with limit=100 pages 230 posts as 100+100+30; limit is capped at 100."""
    posts = [sim.world.add_threads_post(user.id, age_seconds=60 * i).id for i in range(230)]
    url: str | None = f"/{V}/{user.id}/threads"
    params: dict[str, Any] | None = {
        "fields": "id,text,timestamp",
        "limit": 100,
        "access_token": user.token,
    }
    pages: list[list[str]] = []
    while url is not None:
        body = http.get(url, params=params).json()
        params = None
        pages.append([item["id"] for item in body["data"]])
        url = body["paging"].get("next")
    assert [len(page) for page in pages] == [100, 100, 30]
    assert [post for page in pages for post in page] == posts
    assert len(get(http, f"/{V}/{user.id}/threads", user.token, limit=500).json()["data"]) == 100
    assert len(get(http, f"/{V}/{user.id}/threads", user.token).json()["data"]) == 25


def test_listing_filters_and_rules(sim: RunningSim, http: httpx.Client, user: ThreadsUser) -> None:
    """since/until filter posts; since before 1688540400 and before+after together are refused."""
    now = sim.world.now()
    recent = sim.world.add_threads_post(user.id, age_seconds=3600)
    sim.world.add_threads_post(user.id, age_seconds=10 * 86400)
    since = int((now - timedelta(days=2)).timestamp())
    body = get(http, f"/{V}/{user.id}/threads", user.token, since=since).json()
    assert [item["id"] for item in body["data"]] == [recent.id]
    assert error(get(http, f"/{V}/{user.id}/threads", user.token, since=1688540399))["code"] == 100
    both = get(http, f"/{V}/{user.id}/threads", user.token, before="QQ", after="QQ")
    assert error(both)["type"] == "THApiException"


def test_post_insights_shape_and_repost_facade(
    sim: RunningSim, http: httpx.Client, user: ThreadsUser
) -> None:
    """Post insights are lifetime values; a REPOST_FACADE post has empty data."""
    post = sim.world.add_threads_post(user.id, age_seconds=2 * 86400)
    metrics = "views,likes,replies,reposts,quotes,shares"
    data = get(http, f"/{V}/{post.id}/insights", user.token, metric=metrics).json()["data"]
    assert [item["name"] for item in data] == metrics.split(",")
    for item in data:
        assert item["period"] == "lifetime"
        assert item["id"] == f"{post.id}/insights/{item['name']}/lifetime"
        assert isinstance(item["values"][0]["value"], int)
    assert data[0]["values"][0]["value"] > 0
    facade = sim.world.add_threads_post(user.id, media_type="REPOST_FACADE")
    body = get(http, f"/{V}/{facade.id}/insights", user.token, metric="likes").json()
    assert body == {"data": []}
    bad = error(get(http, f"/{V}/{post.id}/insights", user.token, metric="impressions"))
    assert bad["code"] == 100


def test_views_are_a_daily_time_series(
    sim: RunningSim, http: httpx.Client, user: ThreadsUser
) -> None:
    """views: one value per Pacific day with end_time at the day's end; totals for the rest."""
    until = sim.world.now().replace(hour=12, minute=0, second=0, microsecond=0)
    until -= timedelta(days=10)
    since = until - timedelta(days=3)
    body = get(
        http,
        f"/{V}/{user.id}/threads_insights",
        user.token,
        metric="views,likes,replies,reposts,quotes",
        since=int(since.timestamp()),
        until=int(until.timestamp()),
    ).json()
    views, *totals = body["data"]
    assert (views["name"], views["period"]) == ("views", "day")
    ends = [v["end_time"] for v in views["values"]]
    assert len(ends) == 4
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT0[78]:00:00\+0000", end) for end in ends)
    assert ends == sorted(ends)
    assert all(v["value"] > 0 for v in views["values"])
    for item in totals:
        assert set(item["total_value"]) == {"value"}
        assert item["id"] == f"{user.id}/insights/{item['name']}/day"
    default = get(http, f"/{V}/{user.id}/threads_insights", user.token, metric="views").json()
    assert 1 <= len(default["data"][0]["values"]) <= 2


def test_clicks_per_link(sim: RunningSim, http: httpx.Client, user: ThreadsUser) -> None:
    """clicks are link_total_values, one per link URL."""
    body = get(
        http,
        f"/{V}/{user.id}/threads_insights",
        user.token,
        metric="clicks",
        since=SINCE_FLOOR + 86400 * 30,
        until=SINCE_FLOOR + 86400 * 40,
    ).json()
    (item,) = body["data"]
    links = {entry["link_url"]: entry["value"] for entry in item["link_total_values"]}
    assert set(links) == {"https://example.com/a", "https://example.com/b"}
    assert all(value > 0 for value in links.values())


@pytest.mark.parametrize("breakdown", ["country", "city", "age", "gender"])
def test_follower_demographics_per_breakdown(
    sim: RunningSim, http: httpx.Client, user: ThreadsUser, breakdown: str
) -> None:
    """follower_demographics with one breakdown: results that add up to the followers."""
    body = get(
        http,
        f"/{V}/{user.id}/threads_insights",
        user.token,
        metric="follower_demographics,followers_count",
        breakdown=breakdown,
    ).json()
    demographics, followers = body["data"]
    assert followers["total_value"] == {"value": 1234}
    (part,) = demographics["total_value"]["breakdowns"]
    assert part["dimension_keys"] == [breakdown]
    assert sum(r["value"] for r in part["results"]) == 1234
    assert all(len(r["dimension_values"]) == 1 for r in part["results"])


def test_follower_demographics_rules(sim: RunningSim, http: httpx.Client) -> None:
    """Demographics need exactly one breakdown, and are left out under 100 followers."""
    linked = sim.world.add_threads_user(ig_user_id="17841499999999999", followers_count=99)
    path = f"/{V}/{linked.id}/threads_insights"
    assert error(get(http, path, linked.token, metric="follower_demographics"))["code"] == 100
    two = get(http, path, linked.token, metric="follower_demographics", breakdown="age,city")
    assert error(two)["code"] == 100
    small = get(http, path, linked.token, metric="follower_demographics", breakdown="age")
    assert small.json() == {"data": []}


@pytest.mark.parametrize("metric", ["followers_count", "follower_demographics"])
def test_feature_not_available_without_instagram(
    sim: RunningSim, http: httpx.Client, metric: str
) -> None:
    """Follower metrics of a profile without linked Instagram: FEATURE_NOT_AVAILABLE."""
    alone = sim.world.add_threads_user()
    response = get(
        http,
        f"/{V}/{alone.id}/threads_insights",
        alone.token,
        metric=f"likes,{metric}",
        breakdown="country",
    )
    body = error(response)
    assert body["type"] == "THApiException"
    assert body["error_data"] == {"error_code": "THREADS_API__FEATURE_NOT_AVAILABLE"}
    assert body["message"].startswith("THREADS_API__FEATURE_NOT_AVAILABLE")
    likes = get(http, f"/{V}/{alone.id}/threads_insights", alone.token, metric="likes")
    assert likes.status_code == 200


def test_since_floor(sim: RunningSim, http: httpx.Client, user: ThreadsUser) -> None:
    """threads_insights refuses since before 1712991600 and accepts it exactly."""
    path = f"/{V}/{user.id}/threads_insights"
    early = error(get(http, path, user.token, metric="likes", since=SINCE_FLOOR - 1))
    assert early["code"] == 100
    assert str(SINCE_FLOOR) in early["message"]
    ok = get(http, path, user.token, metric="likes", since=SINCE_FLOOR, until=SINCE_FLOOR + 86400)
    assert ok.status_code == 200


def test_threads_token_refresh(sim: RunningSim, http: httpx.Client) -> None:
    """th_refresh_token: >= 24 h old and unexpired Threads tokens only; 60 days more."""
    aged = sim.world.add_threads_user(token_age_seconds=3 * 86400)
    old = aged.token
    body = get(http, "/refresh_access_token", old, grant_type="th_refresh_token").json()
    assert (body["token_type"], body["expires_in"]) == ("bearer", 5183944)
    assert get(http, f"/{V}/me", body["access_token"], fields="id,username").json() == {
        "id": aged.id,
        "username": aged.username,
    }
    young = error(
        get(http, "/refresh_access_token", body["access_token"], grant_type="th_refresh_token")
    )
    assert young["code"] == 190
    sim.world.tokens.expire_token(old)
    expired = error(get(http, "/refresh_access_token", old, grant_type="th_refresh_token"))
    assert (expired["code"], expired["error_subcode"]) == (190, 463)
    ig = sim.world.add_account(login="instagram", token_age_seconds=3 * 86400)
    wrong = error(get(http, "/refresh_access_token", ig.token, grant_type="th_refresh_token"))
    assert (wrong["code"], wrong["message"]) == (
        190,
        "Invalid OAuth access token - Cannot parse access token",
    )


def test_threads_answers_carry_app_usage_only(
    sim: RunningSim, http: httpx.Client, user: ThreadsUser
) -> None:
    """Threads answers carry X-App-Usage but no BUC header; calls log as platform threads."""
    response = get(http, f"/{V}/{user.id}/threads", user.token)
    assert "x-app-usage" in response.headers
    assert "x-business-use-case-usage" not in response.headers
    (call,) = sim.world.log.calls()
    assert (call.platform, call.kind, call.host, call.account) == (
        "threads",
        "threads",
        "threads",
        user.id,
    )


def likes(http: httpx.Client, user: ThreadsUser, **window: int) -> int:
    path = f"/{V}/{user.id}/threads_insights"
    body = get(http, path, user.token, metric="likes", **window).json()
    return int(body["data"][0]["total_value"]["value"])


def test_totals_without_a_range_are_yesterday_through_today(
    sim: RunningSim, http: httpx.Client, user: ThreadsUser
) -> None:
    """No since/until: the total of yesterday and today so far (Pacific days), so filing it
    under one day and summing days counts every day twice."""
    now = sim.world.now()
    today = pacific_day_start(now)
    yesterday = pacific_day_start(today - timedelta(hours=1))
    by_day = likes(http, user, since=stamp(yesterday), until=stamp(today))
    so_far = likes(http, user, since=stamp(today), until=stamp(now))
    assert by_day > 0
    assert likes(http, user) == by_day + so_far


def test_totals_count_every_pacific_day_a_range_touches(
    sim: RunningSim, http: httpx.Client, user: ThreadsUser
) -> None:
    """A Pacific day window gives that day; a UTC day straddles two Pacific days and gives
    both, so windows in UTC days count each day twice; the values are stable per day."""
    until = pacific_day_start(sim.world.now() - timedelta(days=5))
    since = pacific_day_start(until - timedelta(hours=1))
    first = likes(http, user, since=stamp(since), until=stamp(until))
    assert first == likes(http, user, since=stamp(since), until=stamp(until))
    after = pacific_day_start(until + timedelta(hours=26))
    second = likes(http, user, since=stamp(until), until=stamp(after))
    utc_day = until.replace(hour=0)  # 00:00 UTC: the afternoon before, in Pacific time
    straddling = likes(http, user, since=stamp(utc_day), until=stamp(utc_day + timedelta(days=1)))
    assert straddling == first + second
    both = likes(http, user, since=stamp(since), until=stamp(after))
    assert both == first + second


def test_replies_and_deleted_posts_are_not_listed(
    sim: RunningSim, http: httpx.Client, user: ThreadsUser
) -> None:
    """/threads lists posts, not the user's replies nor deleted posts; a reply names its
    parent and root; a deleted post's routes answer (#100) like an unknown object."""
    root = sim.world.add_threads_post(user.id, age_seconds=7200)
    reply = sim.world.add_threads_post(user.id, age_seconds=3600, reply_to=root.id)
    nested = sim.world.add_threads_post(user.id, age_seconds=60, reply_to=reply.id)
    gone = sim.world.add_threads_post(user.id, age_seconds=30)
    sim.world.delete_threads_post(gone.id)
    listed = get(http, f"/{V}/{user.id}/threads", user.token, fields="id,is_reply").json()
    assert listed["data"] == [{"id": root.id, "is_reply": False}]
    fields = "id,is_reply,replied_to,root_post"
    assert get(http, f"/{V}/{nested.id}", user.token, fields=fields).json() == {
        "id": nested.id,
        "is_reply": True,
        "replied_to": {"id": reply.id},
        "root_post": {"id": root.id},
    }
    for path in (f"/{V}/{gone.id}", f"/{V}/{gone.id}/insights"):
        missing = error(get(http, path, user.token, metric="likes"))
        assert (missing["code"], missing["error_subcode"]) == (100, 33)
