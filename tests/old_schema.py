"""An archive as migration 0010 left it (one `metric_value` row per value, `raw` on the
snapshot), filled the way the archiver of that time wrote it, for tests of migration 0011.

The rows cover what the new layout has to carry: every kind of subject, story versions with a
final and a late one, a webhook version with Meta's older metric names, a story that only a
webhook saw and that has no media row, series with end_time and flags, null values,
breakdowns and dimensions, a key repeated within one snapshot, snapshots with no values, raw
answers with Meta's titles and descriptions, JSON null and SQL NULL raw.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# A value: (metric, value, breakdown, dimension, end_time, flag); a snapshot: its columns and
# values, in the order they were written (metric_value.id order).
Value = tuple[str, float | None, str | None, str | None, datetime | None, str | None]

STORY, STORY_MISSED, ORPHAN = "17900000000000001", "17900000000000002", "17900000000000003"
POST, FEED, REEL = "18100000000000001", "17800000000000001", "17800000000000002"
LOST_POST = "18100000000000002"  # a Threads post with snapshots and no media row
IG_USER, THREADS_USER = "17841400000000001", "26000000000000001"
POSTED = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
EXPIRES = POSTED + timedelta(hours=24)
NAV = "story_navigation_action_type"


def at(days: float, hours: float = 0) -> datetime:
    """A moment `days` and `hours` after POSTED."""
    return POSTED + timedelta(days=days, hours=hours)


def day_end(month: int, day: int) -> datetime:
    """The end of a Meta day (midnight Pacific, 07:00 UTC in PDT): a series' end_time."""
    return datetime(2026, month, day, 7, 0, tzinfo=UTC)


def v(
    metric: str,
    value: float | None,
    breakdown: str | None = None,
    dimension: str | None = None,
    end: datetime | None = None,
    flag: str | None = None,
) -> Value:
    return (metric, value, breakdown, dimension, end, flag)


def meta_raw(*names: str) -> dict[str, Any]:
    """An insights answer as Meta gives it, with its constant title and description."""
    data = [
        {
            "name": name,
            "period": "lifetime",
            "values": [{"value": 1}],
            "title": f"{name.title()} title",
            "description": f"The number of {name}.",
            "id": f"x/insights/{name}/lifetime",
        }
        for name in names
    ]
    # A title outside an insights entry (no "name" beside it) is not Meta's constant: kept.
    return {"data": data, "paging": {"next": None}, "media": {"title": "my story"}}


def _story_snapshots() -> list[tuple[dict[str, Any], list[Value]]]:
    story = {"account_id": 1, "platform": "instagram", "subject_type": "story"}
    api = {**story, "subject_id": STORY, "source": "api", "api_version": "v22.0"}
    hook = {**story, "source": "webhook", "slot": "webhook", "delivery_id": 1}
    nav = [v("navigation", 5, NAV, "tap_forward"), v("navigation", 2, NAV, "tap_back")]
    return [
        # The repeated reach: the views break the tie by position, the later value wins.
        (
            {**api, "version": 1, "slot": "h1", "captured_at": at(0, 1)},
            [v("reach", 10), v("replies", 0), v("reach", 11), *nav],
        ),
        ({**api, "version": 2, "slot": "h2", "captured_at": at(0, 2)}, []),
        (
            {**api, "version": 3, "slot": "final", "captured_at": at(0, 23.8)},
            [v("reach", 40), v("replies", 3), v("views", 123456789.25), *nav],
        ),
        (
            {**hook, "subject_id": STORY, "version": 4, "captured_at": at(1, 0.1)},
            [v("impressions", 60), v("reach", 41), v("taps_forward", 7), v("exits", 1)],
        ),
        ({**api, "version": 5, "slot": "late", "captured_at": at(1, 1)}, [v("reach", 42)]),
        (
            {**api, "subject_id": STORY_MISSED, "version": 1, "slot": "h1", "captured_at": at(1)},
            [v("reach", None, flag="unavailable"), v("replies", 0.1)],
        ),
        (
            {**hook, "subject_id": STORY_MISSED, "version": 2, "captured_at": at(2, 0.5)},
            [v("impressions", 3), v("reach", 2)],
        ),
        (
            {**hook, "subject_id": ORPHAN, "version": 1, "captured_at": at(2), "delivery_id": 2},
            [v("impressions", 9), v("reach", 8), v("exits", 1), v("reach", 9)],
        ),
    ]


def _threads_snapshots() -> list[tuple[dict[str, Any], list[Value]]]:
    base = {"account_id": 1, "platform": "threads", "source": "api", "api_version": "v1.0"}
    post = {**base, "subject_type": "threads_post", "subject_id": POST}
    user = {**base, "subject_type": "threads_user", "subject_id": THREADS_USER}
    country = "country"
    return [
        (
            {**post, "version": 1, "slot": "h1", "captured_at": at(0, 3)},
            [v("views", 10), v("likes", 1), v("shares", None, flag="unavailable")],
        ),
        ({**post, "version": 2, "slot": "d1", "captured_at": at(1, 3)}, [v("views", 25)]),
        ({**post, "version": 3, "slot": "d2", "captured_at": at(2, 3)}, []),
        (
            {**post, "subject_id": LOST_POST, "version": 1, "slot": "h1", "captured_at": at(0, 4)},
            [v("views", 3), v("likes", None, flag="unavailable")],
        ),
        (
            {**user, "version": 1, "slot": "poll:0", "captured_at": at(-6)},
            [
                v("views", 100, end=day_end(9, 29)),
                v("views", 120, end=day_end(9, 30)),
                v("likes", 40),
                v("clicks", 3, "link_url", "https://a.example"),
                v("followers_count", 1000),
                v("follower_demographics", 600, country, "US"),
                v("follower_demographics", None, country, "FR", flag="below_threshold"),
            ],
        ),
        (
            {**user, "version": 2, "slot": "poll:1", "captured_at": at(-5)},
            [
                v("views", 125, end=day_end(9, 30)),
                v("views", 30, end=day_end(10, 1)),
                v("likes", 5, end=day_end(10, 1)),
                v("followers_count", None, flag="unavailable"),
            ],
        ),
    ]


def _instagram_snapshots() -> list[tuple[dict[str, Any], list[Value]]]:
    base = {"account_id": 1, "platform": "instagram", "source": "api", "api_version": "v23.0"}
    account = {**base, "subject_type": "ig_account", "subject_id": IG_USER, "kind": "insights"}
    demographics = {**account, "kind": "demographics"}
    feed = {**base, "subject_type": "feed", "subject_id": FEED}
    reel = {**base, "account_id": 2, "subject_type": "reel", "subject_id": REEL}
    return [
        (
            {**account, "version": 1, "slot": "day:10-01", "captured_at": at(-3)},
            [
                v("reach", 500, end=day_end(10, 2)),
                v("views", 900, end=day_end(10, 2)),
                v("profile_links_taps", None, end=day_end(10, 2), flag="not_supported"),
            ],
        ),
        (
            {**account, "version": 2, "slot": "day2:10-01", "captured_at": at(-1)},
            [v("reach", 510, end=day_end(10, 2)), v("views", 0, end=day_end(10, 2))],
        ),
        (
            {**demographics, "version": 1, "slot": "demo:1", "captured_at": at(-3)},
            [
                v("follower_demographics", 300, "age", "18-24"),
                v("follower_demographics", 200, "age", "25-34"),
                v("engaged_audience_demographics", 40, "country", "US"),
            ],
        ),
        (
            {**feed, "version": 1, "slot": "h1", "captured_at": at(3)},
            [v("views", 50), v("total_interactions", None, flag="not_supported")],
        ),
        (
            {**feed, "version": 2, "slot": "d1", "captured_at": at(33)},
            [
                v("views", 75),
                v("profile_activity", 2, "action_type", "bio_link_clicked"),
                v("profile_activity", 1, "action_type", "call"),
            ],
        ),
        ({**reel, "version": 1, "slot": "h1", "captured_at": at(34)}, [v("views", 1e15)]),
        # Written by a worker whose clock ran a year ahead: its month needs a partition too.
        ({**reel, "version": 2, "slot": "d1", "captured_at": at(400)}, [v("views", 2e15)]),
    ]


def snapshots() -> list[tuple[dict[str, Any], list[Value]]]:
    """Every snapshot of the old archive with its values, in insertion (id) order."""
    return [*_story_snapshots(), *_threads_snapshots(), *_instagram_snapshots()]


def _accounts(now: datetime) -> list[dict[str, Any]]:
    common = {"login": "facebook", "state": "active", "created_at": now, "updated_at": now}
    return [
        {**common, "id": 1, "name": "one", "ig_user_id": IG_USER, "ig_token": "enc:1"},
        {**common, "id": 2, "name": "two", "ig_user_id": "17841400000000002", "ig_token": "e:2"},
    ]


def _media() -> list[dict[str, Any]]:
    base = {"account_id": 1, "platform": "instagram", "discovered_at": POSTED}
    story = {**base, "subject_type": "story", "posted_at": POSTED, "expires_at": EXPIRES}
    return [
        {**story, "media_id": STORY, "capture_state": "final_captured", "final_snapshot_id": 3},
        {**story, "media_id": STORY_MISSED, "capture_state": "missed", "missed_reason": "late"},
        {
            **base,
            "platform": "threads",
            "subject_type": "threads_post",
            "media_id": POST,
            "posted_at": POSTED,
            "caption": "hello",
            "media_type": "TEXT_POST",
            "capture_state": "tracked",
        },
        {
            **base,
            "subject_type": "feed",
            "media_id": FEED,
            "media_product_type": "FEED",
            "media_type": "IMAGE",
            "posted_at": at(2),
            "capture_state": "tracked",
        },
        {
            **base,
            "account_id": 2,
            "subject_type": "reel",
            "media_id": REEL,
            "media_product_type": "REELS",
            "media_type": "VIDEO",
            "posted_at": at(33),
            "capture_state": "done",
        },
    ]


def _deliveries(now: datetime) -> list[dict[str, Any]]:
    bodies = [b'{"object":"instagram","entry":[1]}', b'{"object":"instagram","entry":[2]}']
    return [
        {
            "id": i,
            "platform": "instagram",
            "body": body,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "headers": {"content-type": "application/json"},
            "received_at": now,
            "status": "processed",
            "attempts": 1,
        }
        for i, body in enumerate(bodies, start=1)
    ]


def _notices(now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "dedupe_key": f"final_missed:{STORY_MISSED}",
            "kind": "final_missed",
            "account_id": 1,
            "subject": STORY_MISSED,
            "text": "a story's final was missed",
            "details": {"reason": "late"},
            "state": "delivered",
            "created_at": now,
            "attempts": 1,
        }
    ]


def fill(conn: Connection) -> None:
    """Write the old archive into the 0010 schema at `conn`, as its archiver would have."""
    tables = sa.MetaData()
    tables.reflect(conn)
    now = at(40)
    for name, rows in (
        ("account", _accounts(now)),
        ("webhook_delivery", _deliveries(now)),
        ("media", _media()),
        ("notice", _notices(now)),
    ):
        for row in rows:  # one by one: the rows name different columns
            conn.execute(tables.tables[name].insert(), [row])
    snapshot, value = tables.tables["snapshot"], tables.tables["metric_value"]
    for i, (columns, values) in enumerate(snapshots(), start=1):
        raw: Any = meta_raw(*dict.fromkeys(name for name, *_ in values)) if values else None
        if i % 5 == 0:
            raw = sa.null()  # no raw kept at all, beside the JSON null of the empty answers
        row = {"id": i, "kind": "insights", "delivery_id": None, "api_version": None, **columns}
        conn.execute(snapshot.insert(), [{**row, "raw": raw}])
        if values:
            conn.execute(value.insert(), [_value_row(i, value) for value in values])
    if conn.dialect.name == "postgresql":  # the ids above were given, as a restore gives them
        for name in ("account", "webhook_delivery", "media", "notice", "snapshot", "metric_value"):
            conn.execute(sa.text(f"SELECT setval('{name}_id_seq', (SELECT max(id) FROM {name}))"))


def _value_row(snapshot_id: int, value: Value) -> dict[str, Any]:
    metric, number, breakdown, dimension, end, flag = value
    return {
        "snapshot_id": snapshot_id,
        "metric": metric,
        "value": number,
        "breakdown": breakdown,
        "dimension": dimension,
        "end_time": end,
        "flag": flag,
    }
