"""The dashboard's feed post and Reel pages (a media's curve across versions), over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from dashboard.app import create_dashboard
from models.accounts import Account
from models.db import session_scope
from models.snapshots import Media
from store.recording import NOT_SUPPORTED, MetricRow, Subject, record_snapshot
from tests.conftest import make_settings
from tests.test_dashboard import serve

REEL = "17900000000000042"
LIKES = (3, 11, 19)


def fill(engine: Engine) -> None:
    """One Reel captured three times; `saved` refused by the media (not_supported)."""
    posted = datetime.now(UTC) - timedelta(days=2)
    with session_scope(engine) as session:
        shop = Account(name="shop", ig_user_id="17841400000000001", ig_token="t1")
        session.add(shop)
        session.flush()
        assert shop.id is not None
        session.add(
            Media(
                account_id=shop.id, platform="instagram", subject_type="reel", media_id=REEL,
                media_product_type="REELS", media_type="VIDEO", posted_at=posted,
                capture_state="tracked",
            )
        )  # fmt: skip
        subject = Subject(shop.id, "instagram", "reel", REEL)
        for slot, likes, hours in zip(("first", "1h", "3h"), LIKES, (0.5, 1, 3), strict=True):
            metrics = [MetricRow("likes", likes), MetricRow("saved", None, flag=NOT_SUPPORTED)]
            record_snapshot(
                session=session, subject=subject, slot=slot, source="api", metrics=metrics,
                captured_at=posted + timedelta(hours=hours),
            )  # fmt: skip


def test_a_reel_page_shows_its_curve_and_what_was_withheld(
    engine: Engine, database_url: str
) -> None:
    """Every version's value on the Reel's page, the refused metric shown as withheld, a
    link from the accounts page; the Reel is not a feed post."""
    fill(engine)
    with serve(create_dashboard(make_settings(database_url, None))) as client:
        page = client.get(f"/reels/{REEL}")
        home = client.get("/").text
        wrong = client.get(f"/feed/{REEL}")
    assert page.status_code == 200
    body = page.text
    for slot, likes in zip(("first", "1h", "3h"), LIKES, strict=True):
        assert slot in body
        assert f'<td class="num">{likes}</td>' in body
    assert "withheld (not_supported)" in body
    assert "subject_type=reel" in body  # its export link
    assert f'href="/reels/{REEL}"' in home
    assert wrong.status_code == 404
