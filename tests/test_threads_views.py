"""The Threads views (threads_user_daily, threads_post_latest): contents, on both backends."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from models.accounts import Account
from models.db import session_scope
from models.snapshots import Media
from store.recording import UNAVAILABLE, MetricRow, Subject, record_snapshot
from tests.test_views import as_utc

USER, OTHER_USER = "26000000000000001", "26000000000000002"
POST, REPOST, OLD_POST = "18000000000000001", "18000000000000002", "18000000000000003"
A, B = "https://a.example", "https://b.example"
Rows = dict[tuple[Any, ...], dict[str, Any]]


def at(text: str) -> datetime:
    """`MM-DD HH:MM` of 2026, in UTC."""
    return datetime.fromisoformat(f"2026-{text}").replace(tzinfo=UTC)


def views(day: str, value: float) -> MetricRow:
    """One day of the views series; Meta ends its days at midnight Pacific, 07:00 or 08:00
    UTC of the next day, and that is the end_time it reports."""
    return MetricRow("views", value, end_time=at(f"{day} 07:00") + timedelta(days=1))


def row(metric: str, value: float | None, url: str | None = None) -> MetricRow:
    flag = UNAVAILABLE if value is None else None
    return MetricRow(metric, value, "link_url" if url else None, url, flag=flag)


def total(metric: str, day: str, value: float | None, url: str | None = None) -> MetricRow:
    """A range total asked for one Meta day: stored with the day's end, as views are."""
    return replace(row(metric, value, url), end_time=at(f"{day} 07:00") + timedelta(days=1))


# (subject id, kind, slot, captured at, rows): the user's captures and the posts' captures.
USER_CAPTURES = [
    # Totals of "yesterday through today" from before windows: two days each, left out.
    (USER, "insights", "poll:0", "10-30 20:00", [row("likes", 40), row("clicks", 30, A)]),
    (USER, "insights", "backfill:1", "11-02 08:30", [views("11-01", 10), views("11-02", 20)]),
    (USER, "insights", "poll:1", "11-02 09:00", [views("11-02", 25), row("followers_count", 100)]),
    (
        USER,
        "insights",
        "poll:1b",
        "11-02 09:10",
        [total("likes", "11-01", 5), total("clicks", "11-01", 3, A)],
    ),
    (USER, "insights", "poll:1c", "11-02 09:20", [total("clicks", "10-31", 1, B)]),
    # 23:30 UTC is still 2 November here, though already 3 November east of UTC.
    (USER, "insights", "poll:2", "11-02 23:30", [views("11-02", 26), row("followers_count", 105)]),
    (
        USER,
        "insights",
        "poll:2b",
        "11-02 23:31",
        [total("likes", "11-01", None), total("clicks", "11-01", 4, A), total("likes", "10-31", 7)],
    ),
    (USER, "insights", "poll:3", "11-03 07:30", [views("11-03", 8), row("followers_count", 107)]),
    (USER, "demographics", "day:2026-11-02", "11-02 10:00", [row("follower_demographics", 60)]),
    (OTHER_USER, "insights", "poll:1", "11-02 12:00", [row("followers_count", 9)]),
]
POST_CAPTURES = [
    (POST, "insights", "first", "11-01 08:01", [row("views", 10), row("likes", 1)]),
    (
        POST,
        "insights",
        "1h",
        "11-01 09:00",
        [row("views", 50), row("likes", 3), row("shares", None)],
    ),
    (OLD_POST, "insights", "first", "10-20 12:00", [row("views", 7)]),
]
POSTS = [(POST, "TEXT_POST", "tracked"), (REPOST, "REPOST_FACADE", "skipped")]
POSTS += [(OLD_POST, "IMAGE", "done")]


def record(session: Session, account_id: int, subject_type: str, captures: list[Any]) -> None:
    for subject_id, kind, slot, when, rows in captures:
        subject = Subject(account_id, "threads", subject_type, subject_id, kind)
        record_snapshot(
            session=session, subject=subject, slot=slot, source="api", metrics=rows,
            captured_at=at(when),
        )  # fmt: skip


@pytest.fixture
def account_id(engine: Engine) -> int:
    """A Threads user's polls and demographics, a second user, three posts (one a repost)."""
    with session_scope(engine) as session:
        account = Account(name="studio", ig_user_id="1785", ig_token="IGQW", threads_user_id=USER)
        session.add(account)
        session.flush()
        assert account.id is not None
        record(session, account.id, "threads_user", USER_CAPTURES)
        for media_id, media_type, state in POSTS:
            link = f"https://threads.net/p/{media_id}"
            session.add(
                Media(
                    account_id=account.id, platform="threads", subject_type="threads_post",
                    media_id=media_id, media_type=media_type, capture_state=state,
                    posted_at=at("10-20 08:00" if media_id == OLD_POST else "11-01 08:00"),
                    permalink=link, caption=f"post {media_id}",
                )
            )  # fmt: skip
        record(session, account.id, "threads_post", POST_CAPTURES)
        story = Subject(account.id, "instagram", "story", POST)
        record_snapshot(session=session, subject=story, slot="first", source="api", metrics=[])
        return account.id


def select(engine: Engine, view: str, key: tuple[str, ...]) -> Rows:
    """A view's rows keyed by `key`, read in a session whose time zone (on PostgreSQL) is far
    east of UTC, so a day taken in local time would show."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SET TIME ZONE 'Pacific/Kiritimati'"))
        found = [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {view}"))]
    keyed = {tuple(r[name] for name in key): r for r in found}
    assert len(keyed) == len(found), f"{view} repeats a {key}"
    return keyed


def values(keyed: Rows) -> dict[tuple[Any, ...], float | None]:
    return {key: None if r["value"] is None else float(r["value"]) for key, r in keyed.items()}


DAILY_KEY = ("threads_user_id", "day", "metric", "dimension")


def test_threads_user_daily_has_one_value_per_day_and_metric(
    engine: Engine, account_id: int
) -> None:
    """views and windowed totals by the day that ended at end_time, from the newest version;
    point-in-time values by the UTC day they were captured; undated totals left out."""
    assert values(select(engine, "threads_user_daily", DAILY_KEY)) == {
        (USER, "2026-11-01", "views", None): 10,
        (USER, "2026-11-02", "views", None): 26,
        (USER, "2026-11-03", "views", None): 8,
        (USER, "2026-11-02", "followers_count", None): 105,
        (USER, "2026-11-03", "followers_count", None): 107,
        (USER, "2026-10-31", "likes", None): 7,
        (USER, "2026-11-01", "likes", None): None,
        (USER, "2026-11-01", "clicks", A): 4,
        (USER, "2026-10-31", "clicks", B): 1,
        (USER, "2026-11-02", "follower_demographics", None): 60,
        (OTHER_USER, "2026-11-02", "followers_count", None): 9,
    }


def test_threads_user_daily_sums_each_day_once(engine: Engine, account_id: int) -> None:
    """SUM over days adds each day's newest windowed value once; a two-day total never."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT metric, SUM(value), COUNT(*) FROM threads_user_daily "
                "WHERE threads_user_id = :user AND metric IN ('likes', 'clicks') "
                "GROUP BY metric ORDER BY metric"
            ),
            {"user": USER},
        ).all()
    assert [(metric, float(sum_), n) for metric, sum_, n in found] == [
        ("clicks", 5.0, 2),
        ("likes", 7.0, 2),
    ]


def test_threads_user_daily_names_the_capture_of_each_value(
    engine: Engine, account_id: int
) -> None:
    """Each row carries its snapshot, version, capture time, end_time and flag."""
    keyed = select(engine, "threads_user_daily", DAILY_KEY)
    first = keyed[(USER, "2026-11-01", "views", None)]
    assert (first["version"], as_utc(first["end_time"])) == (2, at("11-02 07:00"))
    followers = keyed[(USER, "2026-11-02", "followers_count", None)]
    assert (followers["version"], as_utc(followers["captured_at"])) == (6, at("11-02 23:30"))
    assert (followers["account_id"], followers["end_time"]) == (account_id, None)
    likes = keyed[(USER, "2026-11-01", "likes", None)]
    assert (likes["flag"], likes["version"]) == (UNAVAILABLE, 7)
    assert as_utc(likes["end_time"]) == at("11-02 07:00")
    assert keyed[(USER, "2026-10-31", "clicks", B)]["breakdown"] == "link_url"


def test_threads_post_latest_takes_each_metric_from_the_highest_version(
    engine: Engine, account_id: int
) -> None:
    """The newest capture's counters beside the post; reposts, users and stories stay out."""
    keyed = select(engine, "threads_post_latest", ("media_id", "metric"))
    assert values(keyed) == {
        (POST, "views"): 50,
        (POST, "likes"): 3,
        (POST, "shares"): None,
        (OLD_POST, "views"): 7,
    }
    views = keyed[(POST, "views")]
    assert (views["version"], as_utc(views["captured_at"])) == (2, at("11-01 09:00"))
    post = (views["text"], views["media_type"], views["capture_state"], views["permalink"])
    assert post == (f"post {POST}", "TEXT_POST", "tracked", f"https://threads.net/p/{POST}")
    assert (as_utc(views["posted_at"]), views["account_id"]) == (at("11-01 08:00"), account_id)
    assert keyed[(POST, "shares")]["flag"] == UNAVAILABLE
    assert keyed[(OLD_POST, "views")]["capture_state"] == "done"
