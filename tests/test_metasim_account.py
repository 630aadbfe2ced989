"""The simulator's Instagram account insights (`GET /{ig-user-id}/insights`): Meta's period,
metric_type, breakdown, timeframe and range rules, error shapes, and the control route."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from metasim.api.instagram_account import daily_value
from metasim.world.entities import Account
from models.types import utcnow
from tests.metasim_fixtures import RunningSim
from workers.meta.days import closed_days, day_start
from workers.meta.days import pacific as pacific_zone

VERSION = "v25.0"


def ask(sim: RunningSim, account: Account, **params: Any) -> tuple[int, dict[str, Any]]:
    with httpx.Client(base_url=sim.facebook_url) as http:
        answer = http.get(
            f"/{VERSION}/{account.ig_user_id}/insights",
            params={**params, "access_token": account.token},
        )
    return answer.status_code, answer.json()


REFUSED = {
    "no metric_type": (
        {"metric": "likes,reach", "period": "day"},
        "(#100) The following metrics (likes) should be specified with parameter "
        "metric_type=total_value",
    ),
    "deprecated": ({"metric": "impressions", "period": "day"}, "impressions"),
    "removed in v21": ({"metric": "profile_views", "period": "day"}, "profile_views"),
    "unknown": ({"metric": "clicks", "period": "day"}, "metric[0] must be one of"),
    "no period": ({"metric": "reach"}, "period is required"),
    "breakdown unsupported": (
        {"metric": "accounts_engaged", "period": "day", "metric_type": "total_value",
         "breakdown": "media_product_type"},
        "(#100) Incompatible breakdowns (media_product_type) for metric (accounts_engaged)",
    ),
    "views by follow_type": (
        {"metric": "views", "period": "day", "metric_type": "total_value",
         "breakdown": "follow_type"},
        "(#100) Incompatible breakdowns (follow_type) for metric (views)",
    ),
    "media-level saved": (
        {"metric": "saved", "period": "day", "metric_type": "total_value"},
        "metric[0] must be one of",
    ),
    "follower_count as total": (
        {"metric": "follower_count", "period": "day", "metric_type": "total_value"},
        "time_series",
    ),
    "demographics without timeframe": (
        {"metric": "follower_demographics", "period": "lifetime", "breakdown": "age"},
        "timeframe must be one of",
    ),
    "demographics without breakdown": (
        {"metric": "follower_demographics", "period": "lifetime", "timeframe": "this_month"},
        "exactly one breakdown",
    ),
    "demographics by day": (
        {"metric": "follower_demographics", "period": "day", "breakdown": "age",
         "timeframe": "this_month"},
        "does not support period day",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_requests_breaking_metas_rules_get_a_100_error(sim: RunningSim, case: str) -> None:
    """Each rule of the reference page broken once: HTTP 400, code 100, Meta's envelope."""
    account = sim.world.add_account()
    params, words = REFUSED[case]
    status, body = ask(sim, account, **params)
    assert status == 400
    assert body["error"]["code"] == 100
    assert body["error"]["type"] == "OAuthException"
    assert words in body["error"]["message"]


def test_a_day_total_is_the_sum_of_its_breakdown_and_ranges_add_up(sim: RunningSim) -> None:
    """total_value over one Pacific day is that day's value; the breakdown results sum to it;
    two consecutive days asked together give the sum of both."""
    account = sim.world.add_account()
    newer, older = closed_days(utcnow(), 2)
    plain = {"period": "day", "metric_type": "total_value"}
    _, one = ask(sim, account, metric="views", breakdown="media_product_type", **plain,
                 **newer.params)  # fmt: skip
    total = one["data"][0]["total_value"]
    assert total["value"] == daily_value(account, "views", newer.since)
    results = total["breakdowns"][0]["results"]
    assert sum(r["value"] for r in results) == total["value"]
    assert {r["dimension_values"][0] for r in results} <= {
        "AD", "CAROUSEL_CONTAINER", "POST", "REEL", "STORY"
    }  # fmt: skip
    _, two = ask(sim, account, metric="views", since=older.params["since"],
                 until=newer.params["until"], **plain)  # fmt: skip
    expected = sum(daily_value(account, "views", w.since) for w in (newer, older))
    assert two["data"][0]["total_value"]["value"] == expected


def test_ranges_are_at_most_thirty_days_and_follower_count_never_today(sim: RunningSim) -> None:
    """since/until 31 days apart is refused; follower_count over today is refused, over a
    closed day it is a time series dated by the day's end."""
    account = sim.world.add_account()
    now = utcnow()
    status, body = ask(sim, account, metric="reach", period="day", metric_type="total_value",
                       since=int((now - timedelta(days=31)).timestamp()),
                       until=int(now.timestamp()))  # fmt: skip
    assert status == 400
    assert "30 days" in body["error"]["message"]
    today = {"since": int(day_start(now).timestamp()), "until": int(now.timestamp())}
    status, body = ask(sim, account, metric="follower_count", period="day", **today)
    assert status == 400
    window = closed_days(now, 1)[0]
    status, body = ask(sim, account, metric="follower_count", period="day", **window.params)
    assert status == 200
    (value,) = body["data"][0]["values"]
    assert value["end_time"].startswith(window.until.strftime("%Y-%m-%dT%H:%M:%S"))


def test_the_control_route_withholds_days_refuses_metrics_and_shrinks_followers(
    sim: RunningSim,
) -> None:
    """POST /_sim/accounts/insights: a withheld day answers no data, a refused metric fails
    the call naming it, and below 100 followers the demographics are empty."""
    account = sim.world.add_account()
    window = closed_days(utcnow(), 1)[0]
    day = window.since.astimezone(pacific_zone()).date().isoformat()
    with httpx.Client(base_url=sim.url) as http:
        answer = http.post("/_sim/accounts/insights", json={
            "ig_user_id": account.ig_user_id, "withheld_days": [day],
            "refuses": ["saves"], "followers_count": 99,
        })  # fmt: skip
        assert answer.status_code == 200
        assert http.post("/_sim/accounts/insights", json={"nope": 1}).status_code == 400
    plain = {"period": "day", "metric_type": "total_value", **window.params}
    assert ask(sim, account, metric="reach", **plain) == (200, {"data": []})
    status, body = ask(sim, account, metric="likes,saves", **plain)
    assert status == 400
    assert "The metric saves is not supported" in body["error"]["message"]
    demographics = {"period": "lifetime", "breakdown": "age", "timeframe": "this_month"}
    assert ask(sim, account, metric="follower_demographics", **demographics) == (200, {"data": []})
