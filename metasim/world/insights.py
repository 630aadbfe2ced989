"""The simulated numbers: deterministic functions of an object's seed and age.

Counters only ever grow: each one is `floor(final * progress(age))` with a non-decreasing
progress in [0, 1], so successive snapshots of a story or post show growth and a story
posted in the past already carries most of its final audience. Sums (navigation,
profile_activity, total_interactions) are computed from their parts, so they hold exactly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

STORY_LIFETIME: Final = 24 * 3600  # "Stories are only available for 24 hours"
STORY_TAU: Final = 6 * 3600.0  # most of a story's audience comes in its first hours
POST_TAU: Final = 24 * 3600.0  # Threads posts keep growing for a few days

# Breakdown values as Meta returns them: lowercase (MINS sample; public samples of
# profile_activity also show lowercase, e.g. "bio_link_clicked", "email").
NAVIGATION: Final = ("tap_forward", "tap_back", "tap_exit", "swipe_forward")
PROFILE_ACTIONS: Final = ("bio_link_clicked", "call", "direction", "email", "other", "text")
STORY_PLAIN: Final = (
    "views",
    "reach",
    "replies",
    "shares",
    "total_interactions",
    "follows",
    "profile_visits",
    "link_clicks",
    "reposts",
    "total_views",
)
STORY_METRICS: Final = (*STORY_PLAIN, "navigation", "profile_activity", "facebook_views")
POST_METRICS: Final = ("views", "likes", "replies", "reposts", "quotes", "shares")
USER_TOTALS: Final = ("likes", "replies", "reposts", "quotes")

DEMOGRAPHICS: Final[dict[str, tuple[str, ...]]] = {
    "country": ("US", "BR", "IN", "GB", "MX", "DE", "JP", "FR", "CA", "IT"),
    "city": (
        "New York, New York",
        "Los Angeles, California",
        "London, England",
        "São Paulo, São Paulo (state)",
        "Mexico City, Distrito Federal",
    ),
    "age": ("18-24", "25-34", "35-44", "45-54", "55-64", "65+"),
    "gender": ("F", "M", "U"),
}

try:  # Meta's day boundaries are Pacific time (end_time 07:00 or 08:00 UTC in TINS)
    PACIFIC: tzinfo = ZoneInfo("America/Los_Angeles")
except ZoneInfoNotFoundError:  # pragma: no cover - systems without tzdata
    PACIFIC = UTC


def unit(seed: int, *parts: object) -> float:
    """A stable pseudo-random number in [0, 1) for (seed, parts): no state, no ordering."""
    text = ":".join([str(seed), *(str(p) for p in parts)]).encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _between(seed: int, name: str, low: float, high: float) -> float:
    return low + (high - low) * unit(seed, name)


def story_progress(age_seconds: float) -> float:
    """Share of a story's final counts reached at this age: 0 at posting, 1 at expiry."""
    age = min(max(age_seconds, 0.0), float(STORY_LIFETIME))
    return (1.0 - math.exp(-age / STORY_TAU)) / (1.0 - math.exp(-STORY_LIFETIME / STORY_TAU))


def post_progress(age_seconds: float) -> float:
    return 1.0 - math.exp(-max(age_seconds, 0.0) / POST_TAU)


def story_finals(
    viewers: int, seed: int, overrides: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Final (24 h) counters of a story reaching `viewers` accounts.

    Keys: the plain parts plus `nav:<action>` and `pa:<action>`; overrides win.
    """
    views = round(viewers * _between(seed, "views", 1.1, 1.6))
    visits = round(viewers * _between(seed, "profile_visits", 0.03, 0.1))
    finals = {
        "reach": viewers,
        "views": views,
        "replies": round(viewers * _between(seed, "replies", 0.0, 0.03)),
        "shares": round(viewers * _between(seed, "shares", 0.0, 0.02)),
        "follows": round(viewers * _between(seed, "follows", 0.0, 0.01)),
        "profile_visits": visits,
        "link_clicks": round(viewers * _between(seed, "link_clicks", 0.0, 0.03)),
        "reposts": round(viewers * _between(seed, "reposts", 0.0, 0.01)),
    }
    shares = {"tap_forward": (0.35, 0.6), "tap_back": (0.02, 0.08)}
    for action in NAVIGATION:
        low, high = shares.get(action, (0.05, 0.15))
        finals[f"nav:{action}"] = round(views * _between(seed, action, low, high))
    for action in PROFILE_ACTIONS:
        finals[f"pa:{action}"] = round(visits * _between(seed, f"pa:{action}", 0.05, 0.4))
    finals.update(overrides or {})
    return finals


def story_counts(finals: Mapping[str, int], age_seconds: float) -> dict[str, int]:
    """Every story counter at an age, including the sums and their breakdown parts."""
    progress = story_progress(age_seconds)
    now = {key: math.floor(value * progress) for key, value in finals.items()}
    now["total_interactions"] = now["replies"] + now["shares"] + now["reposts"]
    now["total_views"] = now["views"]
    now["navigation"] = sum(now[f"nav:{a}"] for a in NAVIGATION)
    now["profile_activity"] = sum(now[f"pa:{a}"] for a in PROFILE_ACTIONS)
    return now


def post_finals(seed: int, overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """Final counters of a Threads post."""
    views = round(_between(seed, "views", 50, 2000))
    finals = {
        "views": views,
        "likes": round(views * _between(seed, "likes", 0.02, 0.1)),
        "replies": round(views * _between(seed, "replies", 0.0, 0.02)),
        "reposts": round(views * _between(seed, "reposts", 0.0, 0.01)),
        "quotes": round(views * _between(seed, "quotes", 0.0, 0.005)),
        "shares": round(views * _between(seed, "shares", 0.0, 0.01)),
    }
    finals.update(overrides or {})
    return finals


def post_counts(finals: Mapping[str, int], age_seconds: float) -> dict[str, int]:
    progress = post_progress(age_seconds)
    return {key: math.floor(value * progress) for key, value in finals.items()}


def media_finals(seed: int, overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """Final counters of a feed post or Reel (keys as its metrics, plus `pa:<action>`)."""
    reach = round(_between(seed, "reach", 100, 5000))
    visits = round(reach * _between(seed, "profile_visits", 0.01, 0.05))
    finals = {
        "reach": reach,
        "views": round(reach * _between(seed, "views", 1.1, 2.0)),
        "likes": round(reach * _between(seed, "likes", 0.02, 0.1)),
        "comments": round(reach * _between(seed, "comments", 0.0, 0.01)),
        "saved": round(reach * _between(seed, "saved", 0.0, 0.02)),
        "shares": round(reach * _between(seed, "shares", 0.0, 0.01)),
        "follows": round(reach * _between(seed, "follows", 0.0, 0.005)),
        "profile_visits": visits,
        "ig_reels_avg_watch_time": round(_between(seed, "avg_watch", 2000, 15000)),
    }
    for action in PROFILE_ACTIONS:
        finals[f"pa:{action}"] = round(visits * _between(seed, f"pa:{action}", 0.05, 0.4))
    finals.update(overrides or {})
    return finals


def media_counts(finals: Mapping[str, int], age_seconds: float) -> dict[str, int]:
    """Every counter at an age; the average watch time is an average, not a count: it holds."""
    progress = post_progress(age_seconds)
    now = {key: math.floor(value * progress) for key, value in finals.items()}
    now["ig_reels_avg_watch_time"] = finals["ig_reels_avg_watch_time"]
    now["ig_reels_video_view_total_time"] = now["views"] * finals["ig_reels_avg_watch_time"]
    now["total_interactions"] = now["likes"] + now["saved"] + now["comments"] + now["shares"]
    now["profile_activity"] = sum(now[f"pa:{a}"] for a in PROFILE_ACTIONS)
    return now


def pacific_day_start(moment: datetime) -> datetime:
    """Midnight Pacific time of the day holding `moment`, as aware UTC."""
    local = moment.astimezone(PACIFIC)
    midnight = datetime(local.year, local.month, local.day, tzinfo=PACIFIC)
    return midnight.astimezone(UTC)


def day_starts(since: datetime, until: datetime) -> list[datetime]:
    """Pacific-midnight starts (UTC) of the days overlapping [since, until)."""
    starts = []
    start = pacific_day_start(since)
    while start < until:
        starts.append(start)
        # Adding 26 h then flooring steps one calendar day across DST changes too.
        start = pacific_day_start(start + timedelta(hours=26))
    return starts


def user_daily(seed: int, metric: str, day: datetime, base: float) -> int:
    """A Threads user's value of `metric` on one day (stable per day)."""
    return round(base * (0.5 + unit(seed, metric, day.date().isoformat())))


def split(total: int, seed: int, labels: Sequence[str], name: str) -> list[tuple[str, int]]:
    """`total` shared among labels with seeded weights; the parts sum to `total` exactly."""
    weights = [0.2 + unit(seed, name, label) for label in labels]
    scale = total / sum(weights)
    parts = [math.floor(w * scale) for w in weights]
    order = sorted(range(len(labels)), key=lambda i: parts[i] - weights[i] * scale)
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return list(zip(labels, parts, strict=True))
