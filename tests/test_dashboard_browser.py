"""The dashboard in a real browser: headless Chromium (Debian's, installed by `.ci/run`) driven by
playwright, against the dashboard under uvicorn over a filled archive. Screenshots go to the
test's temporary directory; with ARCHIVER_UPDATE_SCREENSHOTS=1 the story page's also replaces
docs/dashboard-story.png, the README's picture."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from dashboard.app import create_dashboard
from tests import dashboard_data as data
from tests.conftest import make_settings
from tests.servers import ServerThread

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
README_SHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard-story.png"


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run does it)")
    with sync_api.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


def test_pages_render_the_archive_in_chromium(
    browser: Any, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """Each page opens; the numbers, the chart points and the final are where they belong."""
    data.fill(engine)
    app = create_dashboard(make_settings(database_url, None))
    with ServerThread(app) as server:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(server.url + "/")
        shop = page.locator("table.accounts tr", has_text="shop")
        assert shop.locator("td").nth(3).inner_text() == "1"  # final before expiry
        page.screenshot(path=str(tmp_path / "accounts.png"), full_page=True)

        page.click(f"text={data.STORY}")
        assert page.url.endswith(f"/stories/{data.STORY}")
        reach = page.locator("svg.chart", has=page.locator("title", has_text="reach")).first
        assert reach.get_attribute("data-points") == "4"
        assert reach.locator(".point").count() == 4
        assert reach.locator(".point.final").count() == 1
        assert reach.locator("rect.webhook").count() == 1
        column = page.locator("#reach ~ table.versions").first.locator("tr td:last-child")
        expected = [f"{v:g}" for v in (*data.REACH, data.WEBHOOK_REACH)]
        assert column.all_inner_texts() == expected
        assert page.locator(".withheld", has_text="below_threshold").count() >= 3
        page.screenshot(path=str(tmp_path / "story.png"), full_page=True)
        if os.environ.get("ARCHIVER_UPDATE_SCREENSHOTS") == "1":
            page.screenshot(path=str(README_SHOT), full_page=False)

        page.goto(f"{server.url}/threads/users/{data.THREADS_USER}")
        assert page.locator("svg.chart").first.get_attribute("data-points") == "3"
        days = page.locator("table.days tr td:nth-child(3)").all_inner_texts()
        assert [d for d in days if d != "-"] == [f"{v:g}" for v in data.DAILY_VIEWS]
        page.screenshot(path=str(tmp_path / "threads-user.png"), full_page=True)

        page.goto(f"{server.url}/threads/posts/{data.POST}")
        views = page.locator("table.versions tr td:last-child").all_inner_texts()
        assert views == [f"{v:g}" for v in data.POST_VIEWS]

        page.goto(f"{server.url}/deliveries")
        assert "archiver replay --event 1" in page.inner_text("table.failed")
        page.screenshot(path=str(tmp_path / "deliveries.png"), full_page=True)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "accounts.png", "deliveries.png", "story.png", "threads-user.png",
    ]  # fmt: skip
