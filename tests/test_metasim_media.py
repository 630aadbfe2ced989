"""The simulator's feed posts and Reels as strict as Meta: the /media edge and its paging, the
FEED/REELS metric sets, deprecated metrics, breakdown rules, refused metrics; and the
production client listing and reading them unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from metasim import Account
from tests.metasim_fixtures import RunningSim
from workers.meta.graph_api import GraphClient, IgAccount
from workers.meta.metric_sets import NEVER_REQUEST, media_calls
from workers.meta.transport import MetaTransport

V = "v25.0"


@pytest.fixture
def http(sim: RunningSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sim.url}/facebook/{V}", timeout=5.0) as client:
        yield client


@pytest.fixture
def account(sim: RunningSim) -> Account:
    return sim.world.add_account()


def get(http: httpx.Client, path: str, account: Account, **params: Any) -> httpx.Response:
    return http.get(path, params={**params, "access_token": account.token})


def error(response: httpx.Response) -> tuple[int, int, str]:
    body = response.json()["error"]
    return response.status_code, int(body["code"]), str(body["message"])


def test_media_edge_pages_newest_first_without_stories(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """25 a page by default, `next` to the end, newest first; stories are not listed."""
    for hours in range(30):
        sim.world.feed.add_media(account.ig_user_id, age_seconds=3600.0 * (hours + 1))
    sim.world.add_story(account.ig_user_id)
    fields = "id,media_product_type,media_type,timestamp,permalink,caption"
    first = get(http, f"/{account.ig_user_id}/media", account, fields=fields).json()
    assert len(first["data"]) == 25
    assert set(first["data"][0]) == set(fields.split(","))
    second = httpx.get(first["paging"]["next"], timeout=5.0).json()
    assert len(second["data"]) == 5
    assert "next" not in second["paging"]
    stamps = [item["timestamp"] for item in first["data"] + second["data"]]
    assert stamps == sorted(stamps, reverse=True)
    assert {i["media_product_type"] for i in first["data"]} == {"FEED"}


def test_unknown_listing_field_is_refused(http: httpx.Client, account: Account) -> None:
    """A field IG Media does not have is Meta's (#100) nonexisting field."""
    bad = get(http, f"/{account.ig_user_id}/media", account, fields="id,like_total")
    assert error(bad)[:2] == (400, 100)


def test_feed_and_reels_insights_follow_the_product_type(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """Each product type answers its own metrics; another type's metric is refused by name."""
    feed = sim.world.feed.add_media(account.ig_user_id, age_seconds=7200)
    reel = sim.world.feed.add_media(
        account.ig_user_id, media_product_type="REELS", age_seconds=7200
    )
    ok = get(http, f"/{feed.id}/insights", account, metric="likes,reach,saved,follows")
    assert [item["name"] for item in ok.json()["data"]] == ["likes", "reach", "saved", "follows"]
    assert ok.json()["data"][0]["values"][0]["value"] == sim.world.feed.values(feed.id)["likes"]
    watch = get(http, f"/{reel.id}/insights", account, metric="ig_reels_avg_watch_time")
    assert watch.status_code == 200
    for media, metric in (
        (feed, "ig_reels_avg_watch_time"),
        (reel, "follows"),
        (feed, "navigation"),
    ):
        status, code, message = error(get(http, f"/{media.id}/insights", account, metric=metric))
        assert (status, code) == (400, 100)
        assert f"does not support the {metric} metric" in message


@pytest.mark.parametrize("metric", sorted(NEVER_REQUEST))
def test_deprecated_metrics_are_refused(
    sim: RunningSim, http: httpx.Client, account: Account, metric: str
) -> None:
    """impressions, plays, video_views and the rest: a (#100) naming the metric."""
    reel = sim.world.feed.add_media(account.ig_user_id, media_product_type="REELS")
    status, code, message = error(get(http, f"/{reel.id}/insights", account, metric=metric))
    assert (status, code) == (400, 100)
    assert metric in message


def test_breakdown_rules(sim: RunningSim, http: httpx.Client, account: Account) -> None:
    """action_type with profile_activity alone; mixed with another metric: unknown error."""
    feed = sim.world.feed.add_media(account.ig_user_id, age_seconds=86400)
    path = f"/{feed.id}/insights"
    alone = get(http, path, account, metric="profile_activity", breakdown="action_type")
    total = alone.json()["data"][0]["total_value"]
    parts = total["breakdowns"][0]["results"]
    assert sum(part["value"] for part in parts) == total["value"]
    mixed = get(http, path, account, metric="profile_activity,reach", breakdown="action_type")
    assert error(mixed) == (500, 1, "An unknown error has occurred.")
    other = get(http, path, account, metric="profile_activity", breakdown="media_type")
    assert error(other)[:2] == (400, 100)


def test_a_refused_metric_fails_the_whole_call(
    sim: RunningSim, http: httpx.Client, account: Account
) -> None:
    """A carousel that refuses `views`: (#100) naming it, whatever else was asked."""
    album = sim.world.feed.add_media(
        account.ig_user_id, media_type="CAROUSEL_ALBUM", refuses=["views"]
    )
    status, code, message = error(get(http, f"/{album.id}/insights", account, metric="reach,views"))
    assert (status, code) == (400, 100)
    assert message == "(#100) The metric views is not supported for this media type"


def test_bad_media_specs_are_refused(sim: RunningSim, account: Account) -> None:
    """A Reel that is an image, a STORY product type, or a refusal of a foreign metric."""
    feed = sim.world.feed
    for spec in (
        {"media_product_type": "REELS", "media_type": "IMAGE"},
        {"media_product_type": "STORY"},
        {"refuses": ["navigation"]},
    ):
        with pytest.raises(ValueError, match=r"FEED|REELS|not"):
            feed.add_media(account.ig_user_id, **spec)


def test_control_api_creates_media(sim: RunningSim, account: Account) -> None:
    """POST /_sim/media creates media; GET /_sim/media/{id} shows its counters now."""
    spec = {"account": account.ig_user_id, "media_product_type": "REELS", "age_seconds": 60}
    created = httpx.post(f"{sim.url}/_sim/media", json={"media": [spec]}, timeout=5.0)
    media_id = created.json()["media"][0]["id"]
    shown = httpx.get(f"{sim.url}/_sim/media/{media_id}", timeout=5.0).json()
    assert shown["media_product_type"] == "REELS"
    assert shown["values"]["reach"] >= 0
    bad = httpx.post(f"{sim.url}/_sim/media", json={"account": "1", "colour": "x"}, timeout=5.0)
    assert bad.status_code == 400


@pytest.mark.anyio
async def test_client_lists_until_the_cutoff_and_reads_each_set(sim: RunningSim) -> None:
    """list_media stops paging at media older than `newer_than`; every call of the FEED and
    REELS sets is answered by the simulator."""
    account = sim.world.add_account()
    for day in range(60):
        sim.world.feed.add_media(
            account.ig_user_id,
            media_product_type="REELS" if day % 2 else "FEED",
            age_seconds=86400.0 * day + 600,
        )
    creds = IgAccount(account.ig_user_id, account.token)
    async with httpx.AsyncClient(timeout=5.0) as http:
        client = GraphClient(
            MetaTransport(http), facebook_url=sim.facebook_url, instagram_url=sim.url, version=V
        )
        cutoff = sim.world.now() - timedelta(days=10)
        recent = await client.list_media(creds, newer_than=cutoff)
        assert len(recent) == 10
        assert len(sim.world.log.calls(kind="ig_media_list")) == 1  # one page was enough
        everything = await client.list_media(creds)
        assert len(everything) == 60
        for media in everything[:2]:
            calls = media_calls(V, media.media_product_type or "")
            got = await client.story_insights(creds, media.id, calls)
            names = {row.metric for row in got.rows}
            assert names == {m for call in calls for m in call.metrics}
            assert all(row.value is not None for row in got.rows)
