"""Which media insights to request per Graph API version and media product type (STORY,
FEED, REELS), and how an answer becomes MetricRows
(the metrics Meta refused are remembered in workers.meta.metric_drops).

Source: https://developers.facebook.com/documentation/instagram-platform/reference/instagram-media/insights
A metric that needs a breakdown gets a call of its own: mixing a breakdown with metrics that
do not support it fails with "An unknown error has occurred."
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from core.errors import ConfigError
from store.recording import UNAVAILABLE, MetricRow
from workers.meta.metric_drops import DroppedMetrics as DroppedMetrics  # re-exported for callers


@dataclass(frozen=True)
class InsightsCall:
    """One insights request: metrics that can share a call, and the breakdown they need."""

    name: str
    metrics: tuple[str, ...]
    breakdown: str | None = None

    def without(self, dropped: Iterable[str]) -> InsightsCall | None:
        """This call minus dropped metrics; None when nothing is left to ask for."""
        gone = set(dropped)
        metrics = tuple(m for m in self.metrics if m not in gone)
        return replace(self, metrics=metrics) if metrics else None


# Deprecated on every version by now (v18 changelog: from 2023-12-11; v21: 2025-01-08;
# v22: 2025-04-21), so never requested whatever the version. Tests hold the table to this.
NEVER_REQUEST: Final = frozenset(
    {
        "exits",
        "taps_forward",
        "taps_back",
        "engagement",
        "video_views",
        "impressions",
        "plays",
        "clips_replays_count",
        "ig_reels_aggregated_all_plays_count",
    }
)

# `reposts` (December 2025) and the new story metrics such as `link_clicks` (June 2026) came
# out of cycle, "Applies to all versions", so they belong to every row:
# https://developers.facebook.com/documentation/instagram-platform/changelog
# A media that refuses one costs one extra call, once (workers.meta.metric_drops).
_PLAIN = (
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

_FEED = (
    "comments",
    "follows",
    "likes",
    "profile_visits",
    "reach",
    "saved",
    "shares",
    "total_interactions",
    "views",
)
_REELS = (
    "comments",
    "ig_reels_avg_watch_time",
    "ig_reels_video_view_total_time",
    "likes",
    "reach",
    "saved",
    "shares",
    "total_interactions",
    "views",
)
STORY, FEED, REELS = "STORY", "FEED", "REELS"  # Meta's media_product_type values

# THE table: first major API version a row applies to -> media product type -> the calls of
# one snapshot. v22.0 is the oldest version Meta still serves (the versions table of
# https://developers.facebook.com/docs/graph-api/changelog).
# A newer version that changes a set gets a new row; older rows stay for pinned versions.
# FEED and REELS sets follow the metric table of the media insights reference (above):
# `profile_activity` (FEED) takes its `action_type` breakdown in a call of its own.
METRIC_SETS: Final[dict[int, dict[str, tuple[InsightsCall, ...]]]] = {
    22: {
        STORY: (
            InsightsCall("plain", _PLAIN),
            InsightsCall("navigation", ("navigation",), "story_navigation_action_type"),
            InsightsCall("profile_activity", ("profile_activity",), "action_type"),
        ),
        FEED: (
            InsightsCall("plain", _FEED),
            InsightsCall("profile_activity", ("profile_activity",), "action_type"),
        ),
        REELS: (InsightsCall("plain", _REELS),),
    },
}
STORY_METRIC_SETS: Final = {first: sets[STORY] for first, sets in METRIC_SETS.items()}


def major_version(version: str) -> int:
    """`v25.0` -> 25."""
    try:
        return int(version.strip().lstrip("vV").split(".")[0])
    except ValueError:
        msg = f"GRAPH_API_VERSION {version!r} is not like v25.0"
        raise ConfigError(msg) from None


def story_calls(version: str) -> tuple[InsightsCall, ...]:
    """The insights calls of one story snapshot for a pinned API version."""
    return media_calls(version, STORY)


def media_calls(version: str, product_type: str) -> tuple[InsightsCall, ...]:
    """The insights calls of one snapshot of a STORY, FEED or REELS media for a pinned API
    version (ConfigError for a version Meta no longer serves or an unknown product type)."""
    major = major_version(version)
    rows = [first for first in METRIC_SETS if first <= major]
    if not rows:
        oldest = min(METRIC_SETS)
        msg = f"GRAPH_API_VERSION {version} is older than v{oldest}.0, which Meta no longer serves"
        raise ConfigError(msg)
    sets = METRIC_SETS[max(rows)]
    if product_type not in sets:
        msg = f"no metric set for media_product_type {product_type!r} in {version}"
        raise ConfigError(msg)
    return sets[product_type]


def parse_time(value: Any) -> datetime | None:
    """Meta's `2019-04-05T07:56:32+0000` (or any ISO-8601 with a zone) to aware UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        return None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. year 1 at +14:00, before datetime's year 1 in UTC
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _breakdown_rows(name: str, total: Mapping[str, Any], breakdown: str | None) -> list[MetricRow]:
    rows = []
    for part in total.get("breakdowns") or []:
        keys = ",".join(str(k) for k in part.get("dimension_keys") or []) or breakdown
        for result in part.get("results") or []:
            dimension = ",".join(str(v) for v in result.get("dimension_values") or [])
            rows.append(MetricRow(name, _number(result.get("value")), keys, dimension or None))
    return rows


def _item_rows(item: Mapping[str, Any], breakdown: str | None) -> list[MetricRow]:
    name = str(item["name"])
    values = [v for v in item.get("values") or [] if isinstance(v, dict)]
    total = item.get("total_value")
    if isinstance(total, dict):
        value = total.get("value", values[0].get("value") if values else None)
        return [MetricRow(name, _number(value)), *_breakdown_rows(name, total, breakdown)]
    return [
        MetricRow(name, _number(v.get("value")), end_time=parse_time(v.get("end_time")))
        for v in values
    ] or [MetricRow(name, None)]


def parse_insights(
    body: Any, metrics: Sequence[str], breakdown: str | None = None
) -> list[MetricRow]:
    """Insights JSON to rows: a total row per metric (breakdown None) plus one row per
    breakdown result; requested metrics missing from `data` get an `unavailable` row,
    because Meta returns an empty array, not 0, when it has no data (MINS)."""
    data = body.get("data") if isinstance(body, dict) else None
    items = (
        [i for i in data if isinstance(i, dict) and i.get("name")] if isinstance(data, list) else []
    )
    rows = [row for item in items for row in _item_rows(item, breakdown)]
    seen = {str(item["name"]) for item in items}
    return rows + flagged_rows([m for m in metrics if m not in seen], UNAVAILABLE)


def flagged_rows(metrics: Sequence[str], flag: str) -> list[MetricRow]:
    """Null values with a reason, e.g. below_threshold after error 10 "Not enough viewers"."""
    return [MetricRow(metric, None, flag=flag) for metric in metrics]


# --- Instagram account insights (workers.captures.account_insights) ---------------------------
# GET /{ig-user-id}/insights, https://developers.facebook.com/docs/instagram-platform/api-reference/instagram-user/insights
# Interaction metrics: period=day, metric_type=total_value, breakdowns media_product_type,
# follow_type (reach, follows_and_unfollows), follower_type (views), contact_button_type
# (profile_links_taps) as the page's metric table says; account-level `saves` (a media's is
# `saved`) and `reposts`; follower_count: time_series, alone;
# demographics: period=lifetime, one breakdown (age, city, country, gender) and a timeframe.
# `impressions` (deprecated from v22) and the profile click metrics removed in v21
# (profile_views, website_clicks, ...) are not asked on any version.

TOTALS = (
    "reach", "views", "accounts_engaged", "total_interactions", "likes", "comments", "shares",
    "saves", "reposts", "replies", "follows_and_unfollows", "profile_links_taps",
)  # fmt: skip
BY_MEDIA_PRODUCT_TYPE = (
    "views", "reach", "total_interactions", "likes", "comments", "shares", "saves"
)  # fmt: skip
DEMOGRAPHIC_METRICS = (
    "follower_demographics", "engaged_audience_demographics", "reached_audience_demographics"
)  # fmt: skip
DEMOGRAPHIC_TIMEFRAME = "this_month"


@dataclass(frozen=True)
class AccountCall:
    """One insights request: metrics that share period, metric_type and breakdown."""

    name: str
    metrics: tuple[str, ...]
    period: str = "day"
    metric_type: str = "total_value"
    breakdown: str | None = None
    timeframe: str | None = None

    def params(self, metrics: tuple[str, ...]) -> dict[str, str]:
        params = {"metric": ",".join(metrics), "period": self.period}
        params["metric_type"] = self.metric_type
        if self.breakdown:
            params["breakdown"] = self.breakdown
        if self.timeframe:
            params["timeframe"] = self.timeframe
        return params


BY_FOLLOW_TYPE = ("reach", "follows_and_unfollows")
DAY_CALLS = (
    AccountCall("totals", TOTALS),
    AccountCall("by_media_product_type", BY_MEDIA_PRODUCT_TYPE, breakdown="media_product_type"),
    AccountCall("by_follow_type", BY_FOLLOW_TYPE, breakdown="follow_type"),
    AccountCall("by_follower_type", ("views",), breakdown="follower_type"),
    AccountCall("by_contact_button_type", ("profile_links_taps",), breakdown="contact_button_type"),
    AccountCall("follower_count", ("follower_count",), metric_type="time_series"),
)
DEMOGRAPHIC_CALLS = tuple(
    AccountCall(f"demographics_{b}", DEMOGRAPHIC_METRICS, "lifetime", breakdown=b,
                timeframe=DEMOGRAPHIC_TIMEFRAME)
    for b in ("age", "city", "country", "gender")
)  # fmt: skip


def account_rows(
    body: Any, call: AccountCall, metrics: Sequence[str], end_time: datetime | None
) -> list[MetricRow]:
    """An account insights answer as rows, dated `end_time` (the day asked) unless Meta
    dated them. A breakdown call keeps only its breakdown rows (the totals come from the
    plain call), and a metric it has no data for is `unavailable` under that breakdown; a
    demographic metric has no total."""
    rows = parse_insights(body, metrics, call.breakdown)
    if call.breakdown is not None:
        rows = [
            replace(row, breakdown=call.breakdown) if row.flag == UNAVAILABLE else row
            for row in rows
            if row.breakdown is not None or row.flag == UNAVAILABLE
        ]
    return [replace(row, end_time=row.end_time or end_time) for row in rows]
