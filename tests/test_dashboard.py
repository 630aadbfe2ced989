"""The dashboard over HTTP (uvicorn on a real socket, lifespan running): pages show the
archive's figures, escape what they show, 404 what is not there, and want the token when set."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from core.config import Settings
from core.errors import ConfigError
from dashboard.app import create_dashboard
from dashboard.auth import is_loopback
from reports.pauses import PAUSE_COUNTS_KEY, PAUSE_KEY
from tests import dashboard_data as data
from tests.conftest import make_settings
from tests.servers import ServerThread

TOKEN = "dash-token-0123456789"
SHOP_IG = "17841400000000001"


@pytest.fixture
def client(engine: Engine, database_url: str) -> Iterator[httpx.Client]:
    data.fill(engine)
    with serve(create_dashboard(make_settings(database_url, None))) as client:
        yield client


@contextmanager
def serve(app: Starlette) -> Iterator[httpx.Client]:
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_accounts_page_shows_coverage_tokens_and_reauth(client: httpx.Client) -> None:
    """Stories seen / final / missed with the reason, token days left, re-auth needed."""
    page = client.get("/").text
    shop = re.search(r"<tr><td><a href=\"#a\d+\">shop</a>.*?</tr>", page)
    assert shop is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", shop.group(0))
    assert cells[2:4] == ["2", "1"]  # seen, final before expiry
    assert cells[4].startswith("1 (")  # missed, with why
    assert cells[6] == "30"  # token days left
    assert "yes (Instagram: token expired)" in page
    assert f"/stories/{data.STORY}" in page
    assert f"/threads/users/{data.THREADS_USER}" in page


def test_accounts_page_shows_each_accounts_throttle_pauses(
    engine: Engine, database_url: str, redis_url: str
) -> None:
    """Pause counts by reason and the time left of a current pause, per account, from the
    workers' Redis keys; without Redis they are unknown, never zero."""
    data.fill(engine)
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset(PAUSE_COUNTS_KEY.format(SHOP_IG), mapping={"throttled": 2, "slowdown": 1})
        client.set(PAUSE_KEY.format(SHOP_IG), "1", px=120_000)
    finally:
        client.close()
    with serve(create_dashboard(make_settings(database_url, redis_url))) as http:
        row = re.search(r"<tr><td><a href=\"#a\d+\">shop</a>.*?</tr>", http.get("/").text)
    assert row is not None
    assert re.search(r"slowdown: 1, throttled: 2; paused for 1[12]\d s", row.group(0))
    with serve(create_dashboard(make_settings(database_url, None))) as http:
        assert "unknown (" in http.get("/").text


def test_story_page_has_every_version_the_final_and_withheld_values(client: httpx.Client) -> None:
    response = client.get(f"/stories/{data.STORY}")
    assert response.status_code == 200
    page = response.text
    assert "script-src" not in response.headers["content-security-policy"]
    reach = page.split('id="reach"')[1].split("<h2")[0]
    for value in (*data.REACH, data.WEBHOOK_REACH):
        assert f'<td class="num">{value:g}</td>' in reach
    assert reach.count('class="point api') == 3
    assert reach.count('class="point webhook') == 1
    assert reach.count("api final") == 1
    assert 'data-points="4"' in reach
    assert "withheld (below_threshold)" in page
    assert "navigation by story_navigation_action_type" in page


def test_pages_escape_what_they_show(client: httpx.Client) -> None:
    """A missed reason with markup in it is shown as text."""
    page = client.get("/").text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; token lapsed" in page


def test_threads_pages(client: httpx.Client) -> None:
    """The profile's daily views and demographics; the post's curve on its schedule."""
    user = client.get(f"/threads/users/{data.THREADS_USER}").text
    for views in data.DAILY_VIEWS:
        assert f'<td class="num">{views:g}</td>' in user
    assert 'data-points="3"' in user
    assert "1234" in user
    assert "withheld (below_threshold)" in user
    post = client.get(f"/threads/posts/{data.POST}").text
    assert [s for s in ("1h", "6h", "24h") if f"<td>{s}</td>" in post] == ["1h", "6h", "24h"]


def test_deliveries_page_scrubs_errors_and_hints_the_replay(client: httpx.Client) -> None:
    page = client.get("/deliveries").text
    assert "<td>failed</td>" in page
    assert "archiver replay --event 1" in page
    assert data.SECRET not in page
    assert "[REDACTED]" in page


@pytest.mark.parametrize(
    "path", [f"/stories/{data.MISSED}x", f"/threads/posts/{data.STORY}", "/threads/users/9", "/x"]
)
def test_unknown_things_are_404(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_export_links_stream_the_rows_a_page_shows(client: httpx.Client) -> None:
    """Skipped until `export` (archiver export's package) is installed beside the dashboard."""
    pytest.importorskip("export.writers")
    page = client.get(f"/stories/{data.STORY}").text
    href = re.search(r'href="(/export/csv\?[^"]+)"', page)
    assert href is not None
    response = client.get(href.group(1).replace("&amp;", "&"))
    assert response.status_code == 200
    reach = [line for line in response.text.splitlines() if ",reach," in line]
    assert len(reach) == 4
    assert client.get("/export/csv?view=nope").status_code == 400


def _settings(sqlite_url: str, **overrides: object) -> Settings:
    return make_settings(sqlite_url, None, **overrides)


def test_the_token_is_required_when_set(sqlite_url: str) -> None:
    """401 with a Basic challenge without it; basic auth (any user) or bearer let in."""
    app = create_dashboard(_settings(sqlite_url, dashboard_token=TOKEN))
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    with serve(app) as client:
        refused = client.get("/deliveries")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic")
        wrong = {"authorization": "Bearer nope"}
        assert client.get("/deliveries", headers=wrong).status_code == 401
        assert client.get("/", params={"token": TOKEN}).status_code == 401
        for header in (f"Basic {basic}", f"Bearer {TOKEN}"):
            assert client.get("/deliveries", headers={"authorization": header}).status_code == 200


def test_refuses_to_listen_beyond_loopback_without_a_token(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="DASHBOARD_TOKEN"):
        create_dashboard(_settings(sqlite_url, dashboard_host="0.0.0.0"))
    create_dashboard(_settings(sqlite_url, dashboard_host="0.0.0.0", dashboard_token=TOKEN))
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "10.0.0.2", "box")] == [
        True, True, True, False, False,
    ]  # fmt: skip
