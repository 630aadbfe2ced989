"""Metric sets per API version and product type (STORY, FEED, REELS), insights parsing, and
the shared record of dropped metrics."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from core.errors import ConfigError
from store.recording import UNAVAILABLE, MetricRow
from workers.meta.metric_sets import (
    METRIC_SETS,
    NEVER_REQUEST,
    STORY_METRIC_SETS,
    DroppedMetrics,
    InsightsCall,
    media_calls,
    parse_insights,
    parse_time,
    story_calls,
)

PLAIN_BODY: dict[str, Any] = {
    "data": [
        {
            "name": "reach",
            "period": "lifetime",
            "values": [{"value": 17}],
            "title": "Accounts reached",
            "description": "...",
            "id": "18023345989012587/insights/reach/lifetime",
        },
        {
            "name": "views",
            "period": "lifetime",
            "values": [{"value": 28}],
            "id": "18023345989012587/insights/views/lifetime",
        },
    ]
}

NAVIGATION_BODY: dict[str, Any] = {
    "data": [
        {
            "name": "navigation",
            "period": "lifetime",
            "values": [{"value": 23}],
            "title": "Navigation",
            "total_value": {
                "value": 23,
                "breakdowns": [
                    {
                        "dimension_keys": ["story_navigation_action_type"],
                        "results": [
                            {"dimension_values": ["tap_forward"], "value": 19},
                            {"dimension_values": ["tap_back"], "value": 1},
                            {"dimension_values": ["tap_exit"], "value": 2},
                            {"dimension_values": ["swipe_forward"], "value": 1},
                        ],
                    }
                ],
            },
            "id": "18023345989012587/insights/navigation/lifetime",
        }
    ]
}

PROFILE_ACTIVITY_BODY: dict[str, Any] = {
    "data": [
        {
            "name": "profile_activity",
            "period": "lifetime",
            "values": [{"value": 4}],
            "total_value": {
                "value": 4,
                "breakdowns": [
                    {
                        "dimension_keys": ["action_type"],
                        "results": [
                            {"dimension_values": ["bio_link_clicked"], "value": 3},
                            {"dimension_values": ["email"], "value": 1},
                        ],
                    }
                ],
            },
            "id": "18023345989012587/insights/profile_activity/lifetime",
        }
    ]
}


def test_current_version_makes_exactly_three_calls() -> None:
    """v25.0 snapshots need the plain metrics, navigation and profile_activity: three calls."""
    plain, navigation, profile = story_calls("v25.0")
    assert plain.breakdown is None
    assert set(plain.metrics) == {
        "views",
        "reach",
        "replies",
        "shares",
        "total_interactions",
        "follows",
        "profile_visits",
        "link_clicks",
        "reposts",
    }
    assert navigation == InsightsCall("navigation", ("navigation",), "story_navigation_action_type")
    assert profile == InsightsCall("profile_activity", ("profile_activity",), "action_type")


def test_no_row_requests_a_deprecated_metric_or_mixes_a_breakdown() -> None:
    """No version or product type asks for impressions/plays/taps_*/exits/video_views..., and
    breakdowns stay alone in their call."""
    for sets in METRIC_SETS.values():
        for call in (call for calls in sets.values() for call in calls):
            assert not set(call.metrics) & NEVER_REQUEST
            assert call.breakdown is None or len(call.metrics) == 1


def test_feed_and_reels_sets_are_the_media_insights_reference_lists() -> None:
    """FEED and REELS ask exactly the reference's current metrics for their product type;
    profile_activity (FEED) with its action_type breakdown in a call of its own."""
    feed = media_calls("v25.0", "FEED")
    reels = media_calls("v25.0", "REELS")
    assert {m for c in feed for m in c.metrics} == {
        "comments", "follows", "likes", "profile_activity", "profile_visits", "reach", "saved",
        "shares", "total_interactions", "views",
    }  # fmt: skip
    assert {m for c in reels for m in c.metrics} == {
        "comments", "ig_reels_avg_watch_time", "ig_reels_video_view_total_time", "likes",
        "reach", "saved", "shares", "total_interactions", "views",
    }  # fmt: skip
    assert feed[-1] == InsightsCall("profile_activity", ("profile_activity",), "action_type")
    assert all(call.breakdown is None for call in reels)
    with pytest.raises(ConfigError, match="AD"):
        media_calls("v25.0", "AD")


def test_newer_versions_use_the_newest_older_row() -> None:
    """A version without a row of its own uses the latest row at or below it."""
    assert story_calls("v26.0") == story_calls("v22.0") == STORY_METRIC_SETS[22]


@pytest.mark.parametrize("version", ["v17.0", "latest"])
def test_unserved_or_malformed_versions_are_config_errors(version: str) -> None:
    """A version Meta no longer serves, or garbage, is refused with a readable ConfigError."""
    with pytest.raises(ConfigError, match="GRAPH_API_VERSION"):
        story_calls(version)


def test_without_removes_metrics_and_empties_to_none() -> None:
    """Dropping metrics keeps the breakdown; dropping all of them leaves no call."""
    call = InsightsCall("plain", ("reach", "views"))
    assert call.without(["views"]) == InsightsCall("plain", ("reach",))
    assert call.without(["views", "reach"]) is None


def test_plain_metrics_parse_to_one_row_each() -> None:
    """Plain metrics become (metric, value) rows without breakdown."""
    rows = parse_insights(PLAIN_BODY, ["reach", "views"])
    assert rows == [MetricRow("reach", 17.0), MetricRow("views", 28.0)]


def test_navigation_breakdown_rows_keep_lowercase_dimensions_and_total() -> None:
    """navigation yields a total row plus one row per action type, values as Meta sent them."""
    rows = parse_insights(NAVIGATION_BODY, ["navigation"], "story_navigation_action_type")
    assert rows[0] == MetricRow("navigation", 23.0)
    key = "story_navigation_action_type"
    assert rows[1:] == [
        MetricRow("navigation", 19.0, key, "tap_forward"),
        MetricRow("navigation", 1.0, key, "tap_back"),
        MetricRow("navigation", 2.0, key, "tap_exit"),
        MetricRow("navigation", 1.0, key, "swipe_forward"),
    ]


def test_profile_activity_breakdown_rows() -> None:
    """profile_activity is broken down by action_type, with its total row first."""
    rows = parse_insights(PROFILE_ACTIVITY_BODY, ["profile_activity"], "action_type")
    assert rows == [
        MetricRow("profile_activity", 4.0),
        MetricRow("profile_activity", 3.0, "action_type", "bio_link_clicked"),
        MetricRow("profile_activity", 1.0, "action_type", "email"),
    ]


def test_empty_data_flags_every_requested_metric_unavailable() -> None:
    """Empty `data` means no data, not zero: null rows flagged unavailable."""
    rows = parse_insights({"data": []}, ["reach", "views"])
    assert rows == [
        MetricRow("reach", None, flag=UNAVAILABLE),
        MetricRow("views", None, flag=UNAVAILABLE),
    ]


def test_missing_metric_in_partial_data_is_flagged() -> None:
    """A requested metric absent from a non-empty answer is flagged unavailable too."""
    rows = parse_insights(PLAIN_BODY, ["reach", "views", "shares"])
    assert rows[-1] == MetricRow("shares", None, flag=UNAVAILABLE)
    assert len(rows) == 3


def test_time_series_values_keep_their_end_time() -> None:
    """A value with end_time becomes a row with a UTC end_time."""
    body = {
        "data": [
            {"name": "views", "values": [{"value": 3, "end_time": "2024-07-12T08:00:00+0000"}]}
        ]
    }
    (row,) = parse_insights(body, ["views"])
    assert row.end_time == parse_time("2024-07-12T08:00:00+0000")
    assert row.end_time is not None
    assert row.end_time.utcoffset() is not None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_dropped_metric_is_shared_per_version(redis_url: str) -> None:
    """A metric dropped by one worker is seen by another, for that API version only."""
    first, second = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        await DroppedMetrics(first).drop("v25.0", "views", reason="(#100) views is invalid")
        other = DroppedMetrics(second)
        assert await other.dropped("v25.0", ["views", "reach"]) == {"views"}
        assert await other.dropped("v24.0", ["views"]) == set()
        ttl = await second.ttl(other.key("v25.0", "views"))
        assert 0 < ttl <= other.ttl_seconds
    finally:
        await first.aclose()
        await second.aclose()
