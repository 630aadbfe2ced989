"""A metric Meta refuses is dropped narrowly: for that media, and for the API version only once
several distinct media refused it. Real Redis, the simulator over HTTP, the real worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.engine import Engine

from metasim.world.entities import Account
from models.snapshots import raw_body
from store.recording import BELOW_THRESHOLD, NOT_SUPPORTED
from tests.metasim_fixtures import RunningSim
from tests.test_stories import DAY, closed, register, story_settings
from tests.workers_harness import eventually, running_workers
from workers.meta.api_errors import InvalidMetric
from workers.meta.graph_api import GraphClient, IgAccount, StoryInsights
from workers.meta.metric_drops import (
    MEDIA,
    VERSION,
    VERSION_DROP_AFTER_MEDIA,
    DroppedMetrics,
    Refusal,
)
from workers.meta.transport import MetaTransport

V = "v25.0"
REFUSED = "(#100) The metric link_clicks is not supported for this media type"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def graph(sim: RunningSim, redis: Redis) -> AsyncIterator[GraphClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield GraphClient(
            MetaTransport(http, backoff_seconds=0.01),
            facebook_url=sim.facebook_url,
            instagram_url=sim.instagram_url,
            version=V,
            dropped=DroppedMetrics(redis),
        )


@pytest.fixture
def shop(sim: RunningSim) -> Account:
    return sim.world.add_account(username="shop")


def creds(account: Account) -> IgAccount:
    return IgAccount(account.ig_user_id, account.token, account.login)


def asked(sim: RunningSim, media_id: str) -> list[list[str]]:
    """The metric lists of every insights call made for one media, in order."""
    calls = sim.world.log.calls(kind="insights")
    return [c.params["metric"].split(",") for c in calls if c.object_id == media_id]


def row(result: StoryInsights, metric: str) -> tuple[float | None, str | None]:
    (found,) = [r for r in result.rows if r.metric == metric and r.breakdown is None]
    return found.value, found.flag


# --- The shared record in Redis --------------------------------------------------------------


@pytest.mark.anyio
async def test_a_refusal_is_remembered_for_that_media_only(redis: Redis) -> None:
    """One media refusing a metric skips it for that media, not for others or the version."""
    drops = DroppedMetrics(redis)
    assert not await drops.refuse(V, "1", "link_clicks", reason=REFUSED)
    assert await drops.refusals(V, "1", ["reach", "link_clicks"]) == {
        "link_clicks": Refusal(MEDIA, REFUSED)
    }
    assert await drops.refusals(V, "2", ["reach", "link_clicks"]) == {}
    assert await drops.refusals("v24.0", "1", ["link_clicks"]) == {}
    assert await drops.dropped(V, ["link_clicks"]) == set()
    ttl = await redis.ttl(drops.media_key(V, "1"))
    assert 86400 < ttl <= drops.media_ttl_seconds  # outlives the story's 24 h


@pytest.mark.anyio
async def test_the_same_media_refusing_again_counts_once(redis: Redis) -> None:
    """Refusals by one media, however many, count as one toward the version-wide drop."""
    drops = DroppedMetrics(redis)
    for _ in range(VERSION_DROP_AFTER_MEDIA + 1):
        assert not await drops.refuse(V, "1", "reposts", reason="(#100) reposts")
    assert not await drops.refuse(V, "2", "reposts", reason="(#100) reposts")
    assert await drops.dropped(V, ["reposts"]) == set()
    assert await drops.refuse(V, "3", "reposts", reason="(#100) reposts")  # the third media


@pytest.mark.anyio
async def test_distinct_media_drop_the_metric_for_the_version(redis: Redis) -> None:
    """The third distinct media drops the metric for every media, for a week, then afresh."""
    drops = DroppedMetrics(redis)
    results = [await drops.refuse(V, m, "reposts", reason="(#100) no") for m in ("1", "2", "3")]
    assert results == [False, False, True]
    assert await drops.dropped(V, ["reposts", "reach"]) == {"reposts"}
    found = await drops.refusals(V, "99", ["reposts"])
    assert found["reposts"].scope == VERSION
    assert "refused by 3 media" in found["reposts"].message
    assert 0 < await redis.ttl(drops.key(V, "reposts")) <= drops.ttl_seconds
    assert not await redis.exists(drops.refusers_key(V, "reposts"))
    assert await drops.refusals(V, "1", ["reposts"]) == {"reposts": Refusal(MEDIA, "(#100) no")}


@pytest.mark.anyio
async def test_a_metric_answered_lately_stays_per_media(redis: Redis) -> None:
    """A metric Meta answered for some media today is valid for the version: refusals by
    any number of media drop it for those media only."""
    drops = DroppedMetrics(redis)
    await drops.answered(V, ["link_clicks", "reach"])
    for media in ("1", "2", "3", "4"):
        assert not await drops.refuse(V, media, "link_clicks", reason=REFUSED)
    assert await drops.dropped(V, ["link_clicks"]) == set()
    assert await drops.refusals(V, "5", ["link_clicks"]) == {}
    stale = DroppedMetrics(redis, answer_window_seconds=0)
    assert await stale.refuse(V, "6", "link_clicks", reason=REFUSED)


# --- The simulator refuses like Meta --------------------------------------------------------


def test_simulator_refuses_a_metric_for_one_story_and_fails_the_whole_call(
    sim: RunningSim, shop: Account
) -> None:
    """A refused metric fails the call with Meta's (#100); other stories serve it."""
    refusing = sim.world.add_story(shop.ig_user_id, age_seconds=3600, refuses=["link_clicks"])
    clean = sim.world.add_story(shop.ig_user_id, age_seconds=3600)
    with httpx.Client(base_url=sim.url, timeout=5.0) as http:

        def get(media: str, metric: str) -> httpx.Response:
            params = {"metric": metric, "access_token": shop.token}
            return http.get(f"/{V}/{media}/insights", params=params)

        refused = get(refusing.id, "reach,link_clicks,reposts")
        served = get(clean.id, "link_clicks,reposts")
        assert get(refusing.id, "reach,reposts").status_code == 200
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["type"], error["message"]) == (100, "OAuthException", REFUSED)
    assert served.status_code == 200
    values = {item["name"]: item["values"][0]["value"] for item in served.json()["data"]}
    assert set(values) == {"link_clicks", "reposts"}
    assert all(isinstance(v, int) and v >= 0 for v in values.values())


def test_refusals_are_set_through_the_world_and_the_control_api(
    sim: RunningSim, shop: Account
) -> None:
    """refuse_metrics and POST /_sim/stories/refuses change what a story refuses; names are
    checked."""
    story = sim.world.add_story(shop.ig_user_id)
    assert sim.world.refuse_metrics(story.id, ["reposts"]).refuses == ("reposts",)
    with httpx.Client(base_url=sim.url, timeout=5.0) as http:
        cleared = http.post("/_sim/stories/refuses", json={"media_id": story.id, "metrics": []})
        typo = http.post("/_sim/stories/refuses", json={"media_id": story.id, "metrics": ["x"]})
        body = {"account": shop.ig_user_id, "refuses": ["link_clicks"]}
        created = http.post("/_sim/stories", json=body)
    assert cleared.status_code == 200
    assert cleared.json()["refuses"] == []
    assert sim.world.story(story.id).refuses == ()
    assert typo.status_code == 400
    assert "not story metrics: x" in typo.json()["error"]
    assert created.json()["stories"][0]["refuses"] == ["link_clicks"]


# --- The client against the simulator --------------------------------------------------------


@pytest.mark.anyio
async def test_a_refused_metric_is_dropped_for_that_media_only(
    sim: RunningSim, shop: Account, graph: GraphClient
) -> None:
    """The refusing story costs one extra call once, then is never asked the metric again
    and carries a not_supported row with Meta's message; another story still gets it."""
    refusing = sim.world.add_story(shop.ig_user_id, age_seconds=3600, refuses=["link_clicks"])
    clean = sim.world.add_story(shop.ig_user_id, age_seconds=3600)
    first = await graph.story_insights(creds(shop), refusing.id)
    again = await graph.story_insights(creds(shop), refusing.id)
    other = await graph.story_insights(creds(shop), clean.id)
    calls = asked(sim, refusing.id)
    assert len(calls) == 3 + 1 + 3
    assert "link_clicks" in calls[0]
    assert not any("link_clicks" in metrics for metrics in calls[1:])
    for result in (first, again):
        assert row(result, "link_clicks") == (None, NOT_SUPPORTED)
        assert result.raw["not_supported"] == {"link_clicks": {"scope": MEDIA, "message": REFUSED}}
        assert result.dropped == ("link_clicks",)
        assert row(result, "reposts")[0] is not None
    assert len(asked(sim, clean.id)) == 3
    assert row(other, "link_clicks")[0] is not None
    assert row(other, "link_clicks")[1] is None
    assert "not_supported" not in other.raw


@pytest.mark.anyio
async def test_distinct_refusing_media_drop_the_metric_for_every_media(
    sim: RunningSim, shop: Account, graph: GraphClient, redis: Redis
) -> None:
    """After three stories refused reposts, a fourth is not asked it: a null row flagged
    not_supported, scope version, and the clean three calls."""
    for _ in range(VERSION_DROP_AFTER_MEDIA):
        story = sim.world.add_story(shop.ig_user_id, age_seconds=60, refuses=["reposts"])
        await graph.story_insights(creds(shop), story.id)
    assert await DroppedMetrics(redis).dropped(V, ["reposts"]) == {"reposts"}
    fourth = sim.world.add_story(shop.ig_user_id, age_seconds=60)
    result = await graph.story_insights(creds(shop), fourth.id)
    calls = asked(sim, fourth.id)
    assert len(calls) == 3
    assert not any("reposts" in metrics for metrics in calls)
    assert row(result, "reposts") == (None, NOT_SUPPORTED)
    assert result.raw["not_supported"]["reposts"]["scope"] == VERSION


@pytest.mark.anyio
async def test_below_threshold_snapshot_keeps_the_not_supported_row(
    sim: RunningSim, shop: Account, graph: GraphClient
) -> None:
    """Error 10 after a refusal: asked metrics below_threshold, the refused one not_supported."""
    story = sim.world.add_story(shop.ig_user_id, viewers=3, refuses=["link_clicks"])
    result = await graph.story_insights(creds(shop), story.id)
    assert result.flag == BELOW_THRESHOLD
    assert row(result, "link_clicks") == (None, NOT_SUPPORTED)
    assert row(result, "reach") == (None, BELOW_THRESHOLD)
    assert len(result.rows) == 11
    assert result.raw["error"]["code"] == 10
    assert len(asked(sim, story.id)) == 2  # the refused call, then the one error 10 ended


@pytest.mark.anyio
async def test_a_refusal_naming_no_requested_metric_fails_and_is_not_remembered(
    sim: RunningSim, shop: Account, graph: GraphClient, redis: Redis
) -> None:
    """A (#100) about metrics that names none of those asked cannot be narrowed: raised."""
    story = sim.world.add_story(shop.ig_user_id, age_seconds=60)
    message = "(#100) A metric is not supported for this media type"
    sim.world.faults.add(code=100, status=400, kind="insights", message=message)
    with pytest.raises(InvalidMetric):
        await graph.story_insights(creds(shop), story.id)
    assert await DroppedMetrics(redis).refusals(V, story.id, ["link_clicks", "reach"]) == {}


# --- The worker stores it, on both databases ---------------------------------------------------


def history(engine: Engine, media_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "SELECT version, metric, value, flag FROM metric_history"
                    " WHERE subject_id = :m AND breakdown IS NULL ORDER BY version, metric"
                ),
                {"m": media_id},
            ).all()
        )


def raws(engine: Engine, media_id: str) -> list[Any]:
    """Each snapshot's raw answers, unpacked."""
    stmt = sa.text("SELECT id FROM snapshot WHERE subject_id = :m ORDER BY version")
    with engine.connect() as conn:
        ids = list(conn.execute(stmt, {"m": media_id}).scalars())
        return [raw_body(conn, snapshot_id) for snapshot_id in ids]


@pytest.mark.anyio
async def test_worker_stores_new_metrics_and_not_supported_rows(
    engine: Engine, redis_url: str, sim: RunningSim
) -> None:
    """link_clicks and reposts are stored on the clean path; a refusing story's every
    version has link_clicks null and flagged not_supported, with Meta's message in raw."""
    ig = register(engine, sim.world)
    refusing = sim.world.add_story(ig, age_seconds=DAY - 8, refuses=["link_clicks"])
    clean = sim.world.add_story(ig, age_seconds=DAY - 8)
    settings = story_settings(engine.url.render_as_string(False), redis_url, sim)
    async with running_workers(settings):
        await eventually(lambda: closed(engine, 2))
    clean_rows = {(v, m): (value, flag) for v, m, value, flag in history(engine, clean.id)}
    versions = {v for v, _ in clean_rows}
    for version in versions:
        for metric in ("link_clicks", "reposts"):
            value, flag = clean_rows[(version, metric)]
            assert value is not None
            assert flag is None
    refused_rows = history(engine, refusing.id)
    links = [(value, flag) for _, m, value, flag in refused_rows if m == "link_clicks"]
    snapshots = {v for v, *_ in refused_rows}
    assert len(snapshots) >= 2
    assert links == [(None, NOT_SUPPORTED)] * len(snapshots)
    for raw in raws(engine, refusing.id):
        assert raw["insights"]["not_supported"]["link_clicks"]["message"] == REFUSED
    assert len(asked(sim, refusing.id)) == 3 * len(snapshots) + 1
    assert len(asked(sim, clean.id)) == 3 * len(versions)
