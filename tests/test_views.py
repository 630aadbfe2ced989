"""The public views (story_latest, story_final, threads_user_daily, threads_post_latest):
columns and contents, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.accounts import Account
from models.db import session_scope
from models.snapshots import Media
from models.views import (
    MEDIA_LATEST_COLUMNS,
    STORY_FINAL_COLUMNS,
    STORY_LATEST_COLUMNS,
    THREADS_POST_LATEST_COLUMNS,
    THREADS_USER_DAILY_COLUMNS,
)
from store.recording import BELOW_THRESHOLD, MetricRow, Subject, record_snapshot

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
NAV = "story_navigation_action_type"
CAPTURED = "17900000000000001"  # first, final, then the webhook's values at expiry
MISSED = "17900000000000002"  # only `first` before expiry, one API capture after it
HOOK_ONLY = "17900000000000003"  # seen only through the webhook


def api_metrics(views: float, reach: float | None, forward: float) -> list[MetricRow]:
    flag = BELOW_THRESHOLD if reach is None else None
    return [
        MetricRow("views", views),
        MetricRow("reach", reach, flag=flag),
        MetricRow("navigation", forward, breakdown=NAV, dimension="tap_forward"),
    ]


FINAL_METRICS = [
    MetricRow("views", 100),
    MetricRow("reach", 80),
    MetricRow("replies", None, flag=BELOW_THRESHOLD),
    MetricRow("navigation", 30, breakdown=NAV, dimension="tap_forward"),
    MetricRow("navigation", 5, breakdown=NAV, dimension="tap_back"),
]
WEBHOOK_METRICS = [
    MetricRow("reach", 85),
    MetricRow("replies", None, flag=BELOW_THRESHOLD),
    MetricRow("impressions", 120),
    MetricRow("taps_forward", 31),
]


def add_story(session: Any, account_id: int, media_id: str, state: str, posted: bool) -> None:
    session.add(
        Media(
            account_id=account_id,
            platform="instagram",
            subject_type="story",
            media_id=media_id,
            posted_at=T0 if posted else None,
            expires_at=T0 + DAY if posted else None,
            capture_state=state,
            missed_reason=None if state != "missed" else "final capture failed",
        )
    )


def capture(session: Any, subject: Subject, slot: str, at: timedelta, rows: list[MetricRow]) -> int:
    source = "webhook" if slot == "webhook" else "api"
    snapshot, created = record_snapshot(
        session=session,
        subject=subject,
        slot=slot,
        source=source,
        metrics=rows,
        captured_at=T0 + at,
    )
    assert created
    assert snapshot.id is not None
    return snapshot.id


@pytest.fixture
def snapshot_ids(engine: Engine) -> dict[str, int]:
    """Three stories (and a Threads post the story views must leave out); slot -> id."""
    ids: dict[str, int] = {}
    with session_scope(engine) as session:
        account = Account(name="shop", ig_user_id="1784", ig_token="EAAtoken")
        session.add(account)
        session.flush()
        assert account.id is not None
        add_story(session, account.id, CAPTURED, "final_captured", posted=True)
        add_story(session, account.id, MISSED, "missed", posted=True)
        add_story(session, account.id, HOOK_ONLY, "missed", posted=False)
        story = Subject(account.id, "instagram", "story", CAPTURED)
        ids["first"] = capture(session, story, "first", timedelta(minutes=1), api_metrics(9, 7, 2))
        ids["final"] = capture(session, story, "final", DAY - timedelta(minutes=8), FINAL_METRICS)
        ids["webhook"] = capture(session, story, "webhook", DAY, WEBHOOK_METRICS)
        missed = Subject(account.id, "instagram", "story", MISSED)
        ids["missed_first"] = capture(
            session, missed, "first", timedelta(minutes=2), api_metrics(4, None, 1)
        )
        ids["missed_late"] = capture(
            session, missed, "s25", DAY + timedelta(minutes=1), api_metrics(6, 5, 3)
        )
        hook_only = Subject(account.id, "instagram", "story", HOOK_ONLY)
        ids["hook_only"] = capture(session, hook_only, "webhook", DAY, WEBHOOK_METRICS[:1])
        post = Subject(account.id, "threads", "threads_post", CAPTURED)
        capture(session, post, "p1", timedelta(hours=1), [MetricRow("views", 1)])
    return ids


def rows(engine: Engine, view: str, subject_id: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The view's rows of one story keyed by (metric, breakdown, dimension); numbers as float."""
    stmt = sa.text(f"SELECT * FROM {view} WHERE subject_id = :s")
    with engine.connect() as conn:
        found = [dict(row._mapping) for row in conn.execute(stmt, {"s": subject_id})]
    keyed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in found:
        for column in ("value", "webhook_value"):
            if row.get(column) is not None:
                row[column] = float(row[column])
        key = (row["metric"], row["breakdown"], row["dimension"])
        assert key not in keyed, f"{view} repeats {key}"
        keyed[key] = row
    return keyed


def as_utc(value: Any) -> datetime | None:
    """A timestamp read through a view: text on SQLite, a datetime on PostgreSQL."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@pytest.mark.parametrize(
    ("view", "columns"),
    [
        ("story_latest", STORY_LATEST_COLUMNS),
        ("story_final", STORY_FINAL_COLUMNS),
        ("threads_user_daily", THREADS_USER_DAILY_COLUMNS),
        ("threads_post_latest", THREADS_POST_LATEST_COLUMNS),
        ("media_latest", MEDIA_LATEST_COLUMNS),
    ],
)
def test_views_have_the_documented_columns(
    engine: Engine, view: str, columns: tuple[str, ...]
) -> None:
    """Each view's columns are exactly the documented ones, in order."""
    with engine.connect() as conn:
        result = conn.execute(sa.text(f"SELECT * FROM {view} WHERE 1 = 0"))
        assert tuple(result.keys()) == columns


def test_story_latest_takes_each_value_from_its_highest_version(
    engine: Engine, snapshot_ids: dict[str, int]
) -> None:
    """A later webhook version wins for its metrics; API-only metrics keep the final's value."""
    latest = rows(engine, "story_latest", CAPTURED)
    assert set(latest) == {
        ("views", None, None),
        ("reach", None, None),
        ("replies", None, None),
        ("navigation", NAV, "tap_forward"),
        ("navigation", NAV, "tap_back"),
        ("impressions", None, None),
        ("taps_forward", None, None),
    }
    reach, views = latest[("reach", None, None)], latest[("views", None, None)]
    assert (reach["value"], reach["source"], reach["version"]) == (85, "webhook", 3)
    assert reach["snapshot_id"] == snapshot_ids["webhook"]
    assert (views["value"], views["source"], views["version"]) == (100, "api", 2)
    assert latest[("navigation", NAV, "tap_forward")]["value"] == 30
    assert as_utc(views["posted_at"]) == T0
    assert as_utc(views["expires_at"]) == T0 + DAY
    assert as_utc(views["captured_at"]) == T0 + DAY - timedelta(minutes=8)


def test_story_latest_keeps_below_threshold_as_null_with_its_flag(
    engine: Engine, snapshot_ids: dict[str, int]
) -> None:
    """A withheld value is the latest value too: null, flagged below_threshold."""
    replies = rows(engine, "story_latest", CAPTURED)[("replies", None, None)]
    assert replies["value"] is None
    assert replies["flag"] == BELOW_THRESHOLD
    assert replies["snapshot_id"] == snapshot_ids["webhook"]


def test_story_final_puts_the_webhook_values_beside_the_final_capture(
    engine: Engine, snapshot_ids: dict[str, int]
) -> None:
    """Final API values with the webhook's beside them; webhook-only metrics get own rows."""
    final = rows(engine, "story_final", CAPTURED)
    pairs = {key: (row["value"], row["webhook_value"]) for key, row in final.items()}
    assert pairs == {
        ("views", None, None): (100, None),
        ("reach", None, None): (80, 85),
        ("replies", None, None): (None, None),
        ("navigation", NAV, "tap_forward"): (30, None),
        ("navigation", NAV, "tap_back"): (5, None),
        ("impressions", None, None): (None, 120),
        ("taps_forward", None, None): (None, 31),
    }
    replies = final[("replies", None, None)]
    assert (replies["flag"], replies["webhook_flag"]) == (BELOW_THRESHOLD, BELOW_THRESHOLD)
    reach, impressions = final[("reach", None, None)], final[("impressions", None, None)]
    assert (reach["snapshot_id"], reach["version"]) == (snapshot_ids["final"], 2)
    assert reach["capture_state"] == "final_captured"
    assert (impressions["snapshot_id"], impressions["version"]) == (None, None)
    assert impressions["captured_at"] is None
    assert impressions["account_id"] == reach["account_id"]


def test_story_final_is_the_last_api_capture_before_expiry(
    engine: Engine, snapshot_ids: dict[str, int]
) -> None:
    """Without a `final` slot the last capture before expiry stands in; later ones do not."""
    final = rows(engine, "story_final", MISSED)
    assert {row["snapshot_id"] for row in final.values()} == {snapshot_ids["missed_first"]}
    assert final[("views", None, None)]["value"] == 4
    reach = final[("reach", None, None)]
    assert (reach["value"], reach["flag"]) == (None, BELOW_THRESHOLD)
    assert reach["capture_state"] == "missed"
    assert rows(engine, "story_latest", MISSED)[("views", None, None)]["value"] == 6


def test_story_without_an_api_capture_shows_only_webhook_values(
    engine: Engine, snapshot_ids: dict[str, int]
) -> None:
    """A webhook-only story: its values with the API columns null, and no expiry known."""
    final = rows(engine, "story_final", HOOK_ONLY)
    assert list(final) == [("reach", None, None)]
    reach = final[("reach", None, None)]
    assert (reach["webhook_value"], reach["value"], reach["snapshot_id"]) == (85, None, None)
    assert reach["expires_at"] is None
    latest = rows(engine, "story_latest", HOOK_ONLY)[("reach", None, None)]
    assert latest["snapshot_id"] == snapshot_ids["hook_only"]


def test_story_views_leave_out_other_subjects(engine: Engine, snapshot_ids: dict[str, int]) -> None:
    """Threads posts never appear in the story views, even under a story's id."""
    with engine.connect() as conn:
        for view in ("story_latest", "story_final"):
            stmt = sa.text(f"SELECT count(*) FROM {view} WHERE metric = 'views' AND value = 1")
            assert conn.execute(stmt).scalar_one() == 0
    assert len(rows(engine, "story_latest", CAPTURED)) == 7
