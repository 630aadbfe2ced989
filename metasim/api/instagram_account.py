"""GET /{ig-user-id}/insights: Instagram account insights, with Meta's period, metric_type,
breakdown and timeframe rules (https://developers.facebook.com/docs/instagram-platform/api-reference/instagram-user/insights,
the Facebook Login page being
https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/insights).

Rules kept here:
- `metric` and `period` are required; every metric asked must support the period (`day` for
  the interaction metrics and `follower_count`, `lifetime` for the demographics).
- Interaction metrics are `total_value` only: asked without `metric_type=total_value` they
  fail with "(#100) The following metrics (...) should be specified with parameter
  metric_type=total_value"; `follower_count` is `time_series` only; `reach` takes both.
- A breakdown must be one the metric supports (`media_product_type`, `follow_type` for
  reach and follows_and_unfollows, `follower_type` for views, `contact_button_type`);
  demographics need exactly one of age, city, country, gender and a `timeframe`
  (this_week or this_month; the older last_14_days, last_30_days, last_90_days and
  prev_month were removed in v20), and take no since/until.
- `since`/`until` at most 30 days apart; `follower_count` only for the last 30 days and
  never the current day. Deprecated metrics (impressions, profile_views, website_clicks...)
  are (#100) naming the metric.
- Fewer than 100 followers: no follower_count and no demographics (an empty data set, as the
  page says for data that "does not exist or is currently unavailable"). A day the account
  withholds (`withheld_days`) gives an empty data set for every range touching it.

Numbers: each metric of each Pacific day is a deterministic function of the account's id, so
a range's total_value is the sum of its days and breakdown results sum to their total.
Error wordings marked [UNCERTAIN] in docs/simulator.md are not quoted from Meta.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from metasim.api import error_bodies
from metasim.api.request import Ctx, meta_time, parse_time, split_list
from metasim.world import insights
from metasim.world.entities import Account
from metasim.world.world import World

MEDIA_PRODUCT_TYPES: Final = ("AD", "CAROUSEL_CONTAINER", "POST", "REEL", "STORY")
FOLLOW_TYPES: Final = ("FOLLOWER", "NON_FOLLOWER", "UNKNOWN")
CONTACT_BUTTONS: Final = (
    "BOOK_NOW", "CALL", "DIRECTION", "EMAIL", "INSTANT_EXPERIENCE", "TEXT", "UNDEFINED"
)  # fmt: skip
BREAKDOWN_VALUES: Final[dict[str, tuple[str, ...]]] = {
    "media_product_type": MEDIA_PRODUCT_TYPES,
    "follow_type": FOLLOW_TYPES,
    "follower_type": FOLLOW_TYPES,
    "contact_button_type": CONTACT_BUTTONS,
    **insights.DEMOGRAPHICS,
}
ACCOUNT_BREAKDOWNS: Final = (
    "media_product_type", "follow_type", "follower_type", "contact_button_type"
)  # fmt: skip
_MPT: Final = ("media_product_type",)
# metric -> (share of the day's reach, breakdowns); all `day` and `total_value` only.
INTERACTIONS: Final[dict[str, tuple[float, tuple[str, ...]]]] = {
    "reach": (1.0, ("media_product_type", "follow_type")),
    "views": (2.5, ("follower_type", "media_product_type")),
    "accounts_engaged": (0.08, ()),
    "total_interactions": (0.12, _MPT),
    "likes": (0.08, _MPT),
    "comments": (0.01, _MPT),
    "shares": (0.01, _MPT),
    "saves": (0.01, _MPT),
    "reposts": (0.003, ()),
    "replies": (0.005, ()),
    "follows_and_unfollows": (0.01, ("follow_type",)),
    "profile_links_taps": (0.01, ("contact_button_type",)),
}
DEMOGRAPHIC_METRICS: Final = (
    "follower_demographics", "engaged_audience_demographics", "reached_audience_demographics"
)  # fmt: skip
ACCOUNT_METRICS: Final = (*INTERACTIONS, "follower_count", "online_followers", *DEMOGRAPHIC_METRICS)
DEPRECATED: Final = frozenset(
    {"impressions", "profile_views", "website_clicks", "email_contacts", "phone_call_clicks",
     "text_message_clicks", "get_directions_clicks", "audience_city", "audience_country",
     "audience_gender_age", "audience_locale"}
)  # fmt: skip
TIMEFRAMES: Final = ("this_week", "this_month")
MAX_RANGE: Final = timedelta(days=30)
MIN_FOLLOWERS: Final = 100


def insights_of_account(ctx: Ctx) -> dict[str, Any]:
    """GET /{ig-user-id}/insights?metric=&period=&metric_type=&breakdown=&timeframe=
    &since=&until="""
    account = ctx.world.account(ctx.object_id)
    names = _metric_names(ctx)
    period = ctx.params.get("period") or ""
    metric_type = ctx.params.get("metric_type") or None
    breakdown = ctx.params.get("breakdown") or None
    refused = [name for name in names if name in account.insights_refuses]
    if refused:
        message = f"(#100) The metric {refused[0]} is not supported for this account"
        raise error_bodies.api_error(400, 100, message)
    now = ctx.now()
    if names[0] in DEMOGRAPHIC_METRICS:
        _check_demographics(ctx, names, period, breakdown)
        if account.followers_count < MIN_FOLLOWERS:
            return {"data": []}
        return {"data": [_demographic(account, name, breakdown or "") for name in names]}
    _check_day_metrics(names, period, metric_type, breakdown)
    since, until = _range(ctx, now)
    if names == ["follower_count"]:
        _check_follower_range(since, until, now)
    days = insights.day_starts(since, until) if since < until else []
    if any(day.date().isoformat() in account.withheld_days for day in days):
        return {"data": []}
    if "follower_count" in names:
        if account.followers_count < MIN_FOLLOWERS:
            return {"data": []}
        return {"data": [_follower_series(account, days)]}
    return {"data": [_total(account, name, days, breakdown) for name in names]}


def _metric_names(ctx: Ctx) -> list[str]:
    names = split_list(ctx.params.get("metric"))
    if not names:
        raise error_bodies.bad_param("The parameter metric is required")
    for index, name in enumerate(names):
        if name in DEPRECATED:
            message = f"(#100) The {name} metric is no longer supported. See the changelog."
            raise error_bodies.api_error(400, 100, message)
        if name not in ACCOUNT_METRICS:
            raise error_bodies.invalid_metric(index, ACCOUNT_METRICS)
    if not ctx.params.get("period"):
        raise error_bodies.bad_param("The parameter period is required")
    return names


def _check_day_metrics(
    names: list[str], period: str, metric_type: str | None, breakdown: str | None
) -> None:
    for name in names:
        if name in DEMOGRAPHIC_METRICS or name == "online_followers":
            raise error_bodies.bad_param(f"metric {name} does not support period {period}")
    if period != "day":
        raise error_bodies.bad_param(f"metric {names[0]} does not support period {period}")
    if "follower_count" in names:
        if len(names) > 1 or metric_type == "total_value" or breakdown is not None:
            raise error_bodies.bad_param(
                "follower_count is a time_series metric: ask it alone, without breakdown"
            )
        return
    only_total = [name for name in names if name != "reach"]
    if metric_type != "total_value" and (only_total or breakdown is not None):
        listed = ", ".join(only_total or names)
        raise error_bodies.bad_param(
            f"The following metrics ({listed}) should be specified with parameter "
            "metric_type=total_value"
        )
    _check_breakdown(names, breakdown)


def _check_breakdown(names: list[str], breakdown: str | None) -> None:
    if breakdown is None:
        return
    if breakdown not in ACCOUNT_BREAKDOWNS:
        raise error_bodies.bad_param(f"breakdown {breakdown} is not valid for account insights")
    for name in names:
        if breakdown not in INTERACTIONS[name][1]:
            # Meta's wording, as public clients quote it for a media's reach by follow_type.
            raise error_bodies.bad_param(
                f"Incompatible breakdowns ({breakdown}) for metric ({name})"
            )


def _check_demographics(ctx: Ctx, names: list[str], period: str, breakdown: str | None) -> None:
    if any(name not in DEMOGRAPHIC_METRICS for name in names) or period != "lifetime":
        raise error_bodies.bad_param(f"metric {names[0]} does not support period {period}")
    if ctx.params.get("metric_type") not in (None, "", "total_value"):
        raise error_bodies.bad_param("Demographic metrics are total_value metrics")
    if breakdown not in insights.DEMOGRAPHICS:
        raise error_bodies.bad_param(
            "Demographic metrics need exactly one breakdown: age, city, country or gender"
        )
    if ctx.params.get("timeframe") not in TIMEFRAMES:
        raise error_bodies.bad_param(
            "timeframe must be one of the following values: " + ", ".join(TIMEFRAMES)
        )
    if ctx.params.get("since") or ctx.params.get("until"):
        raise error_bodies.bad_param("Demographic metrics do not support since and until")


def _range(ctx: Ctx, now: datetime) -> tuple[datetime, datetime]:
    """[since, until); without them "yesterday through today" (Meta's default range)."""
    kind = error_bodies.OAUTH
    since = parse_time(ctx.params.get("since"), "since", kind=kind)
    until = parse_time(ctx.params.get("until"), "until", kind=kind)
    since = since or insights.pacific_day_start(now - timedelta(days=1))
    until = min(until or now, now)
    if until - since > MAX_RANGE:
        raise error_bodies.bad_param(
            "There cannot be more than 30 days (2592000 s) between since and until"
        )
    return since, until


def _check_follower_range(since: datetime, until: datetime, now: datetime) -> None:
    today = insights.pacific_day_start(now)
    if since < today - MAX_RANGE or until > today:
        raise error_bodies.bad_param(
            "follower_count is only available for the last 30 days, not including the current day"
        )


def daily_value(account: Account, name: str, day: datetime) -> int:
    """One metric of one Pacific day (starting at `day`): stable, growing with daily_reach."""
    share = INTERACTIONS[name][0] if name in INTERACTIONS else 0.01
    return round(account.daily_reach * share * (0.5 + insights.unit(_seed(account), name, day)))


def _seed(account: Account) -> int:
    return int(account.ig_user_id) if account.ig_user_id.isdigit() else len(account.ig_user_id)


def _total(
    account: Account, name: str, days: list[datetime], breakdown: str | None
) -> dict[str, Any]:
    total = sum(daily_value(account, name, day) for day in days)
    value: dict[str, Any] = {"value": total}
    if breakdown is not None:
        labels = BREAKDOWN_VALUES[breakdown]
        parts = insights.split(total, _seed(account), labels, f"{name}:{breakdown}")
        results = [{"dimension_values": [label], "value": n} for label, n in parts if n > 0]
        value["breakdowns"] = [{"dimension_keys": [breakdown], "results": results}]
    return _item(account, name, "day", total_value=value)


def _follower_series(account: Account, days: list[datetime]) -> dict[str, Any]:
    """New followers per day, each dated by its day's end (Pacific midnight)."""
    values = [
        {
            "value": daily_value(account, "follower_count", day),
            "end_time": meta_time(insights.pacific_day_start(day + timedelta(hours=26))),
        }
        for day in days
    ]
    return _item(account, "follower_count", "day", values=values)


def _demographic(account: Account, name: str, breakdown: str) -> dict[str, Any]:
    share = {"follower_demographics": 1.0}.get(name, 0.4)
    total = round(account.followers_count * share)
    labels = insights.DEMOGRAPHICS[breakdown]
    parts = insights.split(total, _seed(account), labels, f"{name}:{breakdown}")
    results = [{"dimension_values": [label], "value": n} for label, n in parts if n > 0]
    breakdowns = [{"dimension_keys": [breakdown], "results": results}]
    return _item(account, name, "lifetime", total_value={"breakdowns": breakdowns})


def _item(account: Account, name: str, period: str, **value: Any) -> dict[str, Any]:
    title = name.replace("_", " ").capitalize()
    return {
        "name": name,
        "period": period,
        **value,
        "title": title,
        "description": f"{title} of your account.",
        "id": f"{account.ig_user_id}/insights/{name}/{period}",
    }


def set_account_insights(world: World, body: dict[str, Any]) -> Any:
    """POST /_sim/accounts/insights {ig_user_id, followers_count?, daily_reach?, refuses?,
    withheld_days?}: change what an account's insights answer, at run time."""
    allowed = {"ig_user_id", "followers_count", "daily_reach", "refuses", "withheld_days"}
    unknown = set(body) - allowed
    if unknown:
        msg = f"unknown keys: {', '.join(sorted(unknown))}"
        raise ValueError(msg)
    with world.lock:
        account = world.account(str(body["ig_user_id"]))
        if "followers_count" in body:
            account.followers_count = int(body["followers_count"])
        if "daily_reach" in body:
            account.daily_reach = int(body["daily_reach"])
        if "refuses" in body:
            account.insights_refuses = tuple(str(m) for m in body["refuses"])
        if "withheld_days" in body:
            account.withheld_days = tuple(str(d) for d in body["withheld_days"])
        return account.to_dict()
