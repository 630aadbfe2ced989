"""An archive for the dashboard's tests: two accounts, a story captured over four versions (three
API, the last the final, then a webhook version), a missed story, a Threads profile's days and a
Threads post on its schedule, and a failed delivery. Every figure the tests look for is here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from models.accounts import Account
from models.db import session_scope
from models.deliveries import FAILED, WebhookDelivery
from models.snapshots import Media
from store.recording import BELOW_THRESHOLD, MetricRow, Subject, record_snapshot

STORY = "18000000000000001"
MISSED = "18000000000000002"
POST = "17900000000000009"
THREADS_USER = "25000000000000001"
REACH = (10.0, 25.0, 40.0)  # API versions 1-3; 3 is the final
WEBHOOK_REACH = 42.0  # version 4
TAP_FORWARD = (3.0, 7.0, 9.0)
POST_VIEWS = (5.0, 50.0, 80.0)  # slots 1h, 6h, 24h
DAILY_VIEWS = (120.0, 340.0, 95.0)
FOLLOWERS = 1234.0
HOSTILE = "<script>alert('x')</script> token lapsed"
SECRET = "EAAGdashboardsecret0123456789"


@dataclass
class Filled:
    account_id: int
    final_version: int = 3


def fill(engine: Engine, *, now: datetime | None = None) -> Filled:
    now = now or datetime.now(UTC)
    with session_scope(engine) as session:
        shop = Account(
            name="shop", ig_user_id="17841400000000001", ig_token="t1",
            ig_token_expires_at=now + timedelta(days=30, hours=1), threads_user_id=THREADS_USER,
        )  # fmt: skip
        blocked = Account(
            name="blocked", ig_user_id="17841400000000002", ig_token="t2",
            state="reauth_required", state_reason="token expired",
        )  # fmt: skip
        session.add_all([shop, blocked])
        session.flush()
        assert shop.id is not None
        _stories(session, shop.id, now)
        _threads(session, shop.id, now)
        session.add(
            WebhookDelivery(
                platform="instagram", body=b"{}", body_sha256="0" * 64, status=FAILED,
                attempts=3, error=f"KeyError: 'value' (access_token={SECRET})",
            )
        )  # fmt: skip
        return Filled(shop.id)


def _stories(session: object, account_id: int, now: datetime) -> None:
    from sqlmodel import Session

    assert isinstance(session, Session)
    posted = now - timedelta(hours=25)
    story = Media(
        account_id=account_id, platform="instagram", subject_type="story", media_id=STORY,
        posted_at=posted, expires_at=posted + timedelta(hours=24), capture_state="final_captured",
    )  # fmt: skip
    missed = Media(
        account_id=account_id, platform="instagram", subject_type="story", media_id=MISSED,
        posted_at=posted, expires_at=posted + timedelta(hours=24), capture_state="missed",
        missed_reason=HOSTILE,
    )  # fmt: skip
    session.add_all([story, missed])
    subject = Subject(account_id, "instagram", "story", STORY)
    final_id = None
    for index, (reach, taps) in enumerate(zip(REACH, TAP_FORWARD, strict=True)):
        metrics = [
            MetricRow("reach", reach),
            MetricRow("replies", None, flag=BELOW_THRESHOLD),
            MetricRow("navigation", taps, "story_navigation_action_type", "tap_forward"),
        ]
        slot = "final" if index == len(REACH) - 1 else f"t{index}"
        at = posted + timedelta(hours=4 * (index + 1))
        recorded, _ = record_snapshot(
            session=session, subject=subject, slot=slot, source="api", metrics=metrics,
            captured_at=at,
        )  # fmt: skip
        final_id = recorded.id
    story.final_snapshot_id = final_id
    record_snapshot(
        session=session, subject=subject, slot="webhook", source="webhook",
        metrics=[MetricRow("reach", WEBHOOK_REACH)], captured_at=now - timedelta(minutes=5),
    )  # fmt: skip


def _threads(session: object, account_id: int, now: datetime) -> None:
    from sqlmodel import Session

    assert isinstance(session, Session)
    posted = now - timedelta(days=2)
    session.add(
        Media(
            account_id=account_id, platform="threads", subject_type="threads_post",
            media_id=POST, posted_at=posted, capture_state="tracked",
        )
    )  # fmt: skip
    post = Subject(account_id, "threads", "threads_post", POST)
    for hours, views in zip((1, 6, 24), POST_VIEWS, strict=True):
        record_snapshot(
            session=session, subject=post, slot=f"{hours}h", source="api",
            metrics=[MetricRow("views", views)], captured_at=posted + timedelta(hours=hours),
        )  # fmt: skip
    user = Subject(account_id, "threads", "threads_user", THREADS_USER)
    today = now.replace(hour=12, minute=0, second=0, microsecond=0)
    for back, views in zip((3, 2, 1), DAILY_VIEWS, strict=True):
        # a day's value ends at the next day's start (end_time), as Meta dates its series
        end = today - timedelta(days=back - 1, hours=5)
        record_snapshot(
            session=session, subject=user, slot=f"d{back}", source="api",
            metrics=[MetricRow("views", views, end_time=end)], captured_at=end,
        )  # fmt: skip
    record_snapshot(
        session=session, subject=user, slot="now", source="api", captured_at=now,
        metrics=[
            MetricRow("followers_count", FOLLOWERS),
            MetricRow("follower_demographics", 700.0, "country", "US"),
            MetricRow("follower_demographics", None, "country", "IS", flag=BELOW_THRESHOLD),
        ],
    )  # fmt: skip
