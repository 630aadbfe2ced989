"""The account insights page of the dashboard and its export links, over HTTP: closed days as
curves and a table, views by media product type, demographics; withheld and refused values
shown as such, never as 0; an unknown account is 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from dashboard.app import create_dashboard
from models.accounts import Account
from models.db import session_scope
from store.recording import NOT_SUPPORTED, UNAVAILABLE, MetricRow, Subject, record_snapshot
from tests.conftest import make_settings
from tests.test_dashboard import serve

IG = "17841400000000077"
END = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # the end of Pacific day 2026-11-01
DAY = timedelta(days=1)


def fill(engine: Engine) -> None:
    """Two closed days (the second withheld by Meta), one refused metric, demographics."""
    with session_scope(engine) as session:
        account = Account(name="shop", ig_user_id=IG, ig_token="EAAtoken1")
        session.add(account)
        session.flush()
        assert account.id is not None
        days = [
            MetricRow("reach", 510, end_time=END),
            MetricRow("views", 1200, end_time=END),
            MetricRow("views", 300, "media_product_type", "STORY", END),
            MetricRow("views", 900, "media_product_type", "REEL", END),
            MetricRow("follower_count", 4, end_time=END),
            MetricRow("saves", None, end_time=END, flag=NOT_SUPPORTED),
            MetricRow("reach", None, end_time=END + DAY, flag=UNAVAILABLE),
        ]
        record_snapshot(session=session, subject=Subject(account.id, "instagram", "ig_account", IG),
                        slot="run:1", source="api", metrics=days)  # fmt: skip
        ages = [MetricRow("follower_demographics", 333, "age", "25-34")]
        record_snapshot(
            session=session,
            subject=Subject(account.id, "instagram", "ig_account", IG, "demographics"),
            slot="day:1", source="api", metrics=ages,
        )  # fmt: skip


def test_the_account_page_shows_days_breakdowns_demographics_and_withheld_values(
    engine: Engine, database_url: str
) -> None:
    """Numbers by day, STORY views, the demographics; Meta's gaps as withheld, not zero;
    linked from the accounts page; its export link streams the view's rows."""
    fill(engine)
    with serve(create_dashboard(make_settings(database_url, None))) as client:
        page = client.get(f"/accounts/{IG}/insights").text
        home = client.get("/").text
        exported = client.get("/export/csv", params={"view": "ig_account_daily", "subject_id": IG})
        missing = client.get("/accounts/999/insights")
    assert f"/accounts/{IG}/insights" in home
    assert '<td class="num">510</td>' in page
    assert '<td class="num">300</td>' in page  # STORY views of the day
    assert "withheld (not_supported)" in page
    assert "withheld (unavailable)" in page
    assert '<td class="num">333</td>' in page
    assert "this_month" not in page  # follower_demographics is "lifetime"
    assert exported.status_code == 200
    assert len(exported.text.strip().splitlines()) == 1 + 7
    assert missing.status_code == 404
