"""The Threads client: pure parsing of captured bodies, then the simulator over real HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from metasim import ThreadsUser
from store.recording import UNAVAILABLE, MetricRow
from tests.conftest import make_settings
from tests.metasim_fixtures import RunningSim
from workers.meta.api_errors import (
    AccountPaused,
    AuthError,
    ClientError,
    FeatureNotAvailable,
    Throttled,
    error_from_response,
)
from workers.meta.clients import build_clients
from workers.meta.pacing import Pacer
from workers.meta.threads_api import (
    INSIGHTS_SINCE_FLOOR,
    POST_METRICS,
    ThreadsAccount,
    ThreadsClient,
    parse_posts,
    parse_user_insights,
    user_insights_params,
)
from workers.meta.transport import MetaTransport, TokenGrant, make_http_client, next_page

TOKEN = "THAAG-secret-threads-token-0123456789"
BASE = "https://graph.threads.net"

# Shapes from https://developers.facebook.com/docs/threads/insights: a time series, totals,
# link totals, demographics.
USER_BODY: dict[str, Any] = {
    "data": [
        {"name": "views", "period": "day", "title": "views", "description": "profile views",
         "values": [{"value": 10, "end_time": "2024-07-12T07:00:00+0000"},
                    {"value": 12, "end_time": "2024-07-13T07:00:00+0000"}],
         "id": "1/insights/views/day"},
        {"name": "likes", "period": "day", "total_value": {"value": 31},
         "id": "1/insights/likes/day"},
        {"name": "clicks", "period": "day", "id": "1/insights/clicks/day",
         "link_total_values": [{"value": 4, "link_url": "https://example.com/a"},
                               {"value": 0, "link_url": "https://example.com/b"}]},
        {"name": "follower_demographics", "period": "day", "id": "1/insights/fd/day",
         "total_value": {"breakdowns": [{"dimension_keys": ["country"], "results": [
             {"dimension_values": ["US"], "value": 90}, {"dimension_values": ["DE"], "value": 10}
         ]}]}},
    ]
}  # fmt: skip
POSTS_BODY: dict[str, Any] = {
    "data": [
        {"id": "17890000000000001", "media_product_type": "THREADS", "media_type": "TEXT_POST",
         "permalink": "https://www.threads.net/@x/post/Tabc", "text": "hello",
         "timestamp": "2024-07-12T08:30:00+0000", "shortcode": "Tabc", "is_quote_post": False},
        {"id": "17890000000000002", "media_type": "REPOST_FACADE"},
        {"media_type": "IMAGE"},
    ],
    "paging": {"cursors": {"before": "QQ", "after": "Ug"},
               "next": f"{BASE}/v1.0/1/threads?after=Ug"},
}  # fmt: skip


def test_user_insights_rows_by_shape() -> None:
    """Series rows carry end_time, totals one row, clicks one per URL, demographics per value."""
    metrics = ["views", "likes", "clicks", "follower_demographics"]
    rows = parse_user_insights(USER_BODY, metrics, "country")
    assert rows == [
        MetricRow("views", 10.0, end_time=datetime(2024, 7, 12, 7, tzinfo=UTC)),
        MetricRow("views", 12.0, end_time=datetime(2024, 7, 13, 7, tzinfo=UTC)),
        MetricRow("likes", 31.0),
        MetricRow("clicks", 4.0, "link_url", "https://example.com/a"),
        MetricRow("clicks", 0.0, "link_url", "https://example.com/b"),
        MetricRow("follower_demographics", 90.0, "country", "US"),
        MetricRow("follower_demographics", 10.0, "country", "DE"),
    ]


def test_missing_or_empty_metrics_are_unavailable_not_zero() -> None:
    """A requested metric left out, or answered with no values, is a null row flagged."""
    body = {"data": [{"name": "views", "period": "day", "values": []}]}
    rows = parse_user_insights(body, ["views", "follower_demographics", "clicks"], "age")
    assert rows == [
        MetricRow("views", None, flag=UNAVAILABLE),
        MetricRow("follower_demographics", None, "age", flag=UNAVAILABLE),
        MetricRow("clicks", None, "link_url", flag=UNAVAILABLE),
    ]
    assert parse_user_insights({"error": "odd"}, ["likes"]) == [
        MetricRow("likes", None, flag=UNAVAILABLE)
    ]


def test_post_page_parsing() -> None:
    """Posts parse with UTC timestamps and booleans; items without an id are skipped."""
    first, facade = parse_posts(POSTS_BODY)
    assert first.timestamp == datetime(2024, 7, 12, 8, 30, tzinfo=UTC)
    assert (first.text, first.shortcode, first.is_quote_post) == ("hello", "Tabc", False)
    assert first.raw["media_product_type"] == "THREADS"
    assert (facade.media_type, facade.text, facade.timestamp) == ("REPOST_FACADE", None, None)
    assert parse_posts(None) == []


def test_next_page_stays_on_our_host() -> None:
    """`next` on our host is followed; elsewhere only the cursor is reused; no next ends it."""
    url, params = f"{BASE}/v1.0/1/threads", {"limit": "100"}
    assert next_page(BASE, url, params, POSTS_BODY) == (POSTS_BODY["paging"]["next"], {})
    foreign = {"paging": {"cursors": {"after": "Ug"}, "next": "https://evil.test/v1.0/1/threads"}}
    assert next_page(BASE, url, params, foreign) == (url, {"limit": "100", "after": "Ug"})
    del foreign["paging"]["cursors"]
    assert next_page(BASE, url, params, foreign) is None
    assert next_page(BASE, url, params, {"data": [], "paging": {"cursors": {"after": "x"}}}) is None
    assert next_page(BASE, url, params, {"paging": {"next": f"{BASE}.evil.test/x"}}) is None


def test_user_insights_params_clamp_and_refuse() -> None:
    """since is raised to the API floor; demographics need exactly one known breakdown."""
    params = user_insights_params(["views"], 0, INSIGHTS_SINCE_FLOOR + 86400, None)
    assert params == {
        "metric": "views",
        "since": str(INSIGHTS_SINCE_FLOOR),
        "until": str(INSIGHTS_SINCE_FLOOR + 86400),
    }
    later = user_insights_params(["likes"], INSIGHTS_SINCE_FLOOR + 5, None, None)
    assert later["since"] == str(INSIGHTS_SINCE_FLOOR + 5)
    for metrics, breakdown in [
        (["follower_demographics"], None),
        (["follower_demographics"], "age,city"),
        (["likes"], "country"),
        ([], None),
    ]:
        with pytest.raises(ValueError, match=r"breakdown|metric"):
            user_insights_params(metrics, None, None, breakdown)


def test_feature_not_available_is_named() -> None:
    """THREADS_API__FEATURE_NOT_AVAILABLE maps to FeatureNotAvailable with the metrics asked."""
    code = "THREADS_API__FEATURE_NOT_AVAILABLE"
    message = f"{code}: followers_count is not available"
    error_data = {"error_code": code}
    body = {"error": {"message": message, "type": "THApiException", "code": 100,
                      "error_data": error_data}}  # fmt: skip
    error = error_from_response(400, body, requested_metrics=["likes", "followers_count"])
    assert type(error) is FeatureNotAvailable
    assert isinstance(error, ClientError)
    assert (error.metrics, error.named) == (("likes", "followers_count"), ("followers_count",))
    plain = {"error": {"message": "(#100) Invalid parameter", "code": 100}}
    assert type(error_from_response(400, plain)) is ClientError


def test_reprs_hide_tokens() -> None:
    """Neither the account, a grant nor the client shows the token."""
    account = ThreadsAccount("25000000000000001", TOKEN)
    grant = TokenGrant(TOKEN, 5183944, datetime.now(UTC))
    client = ThreadsClient(MetaTransport(httpx.AsyncClient()), base_url=BASE)
    for text in (repr(account), str(account), repr(grant), repr(client)):
        assert TOKEN not in text
    assert "25000000000000001" in repr(account)


# --- Over real HTTP against the simulator -----------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def client(sim: RunningSim, redis: Redis) -> AsyncIterator[ThreadsClient]:
    settings = make_settings("sqlite://", None, **sim.settings_overrides())
    async with make_http_client(settings) as http:
        yield build_clients(http, settings, redis, minute_seconds=0.02).threads


@pytest.fixture
def user(sim: RunningSim) -> ThreadsUser:
    account = sim.world.add_account()
    return sim.world.add_threads_user(
        ig_user_id=account.ig_user_id,
        token=TOKEN,
        followers_count=1234,
        links=["https://example.com/a", "https://example.com/b"],
    )


def of(user: ThreadsUser) -> ThreadsAccount:
    return ThreadsAccount(user.id, user.token)


@pytest.mark.anyio
async def test_list_posts_pages_by_100_to_the_end(
    sim: RunningSim, client: ThreadsClient, user: ThreadsUser
) -> None:
    """230 posts come back in order over 3 calls, each asking limit=100 on the Threads host."""
    posts = [sim.world.add_threads_post(user.id, age_seconds=60 * i).id for i in range(230)]
    listed = await client.list_posts(of(user))
    assert [post.id for post in listed] == posts
    assert all(post.timestamp is not None and post.permalink for post in listed)
    calls = sim.world.log.calls(kind="threads")
    assert len(calls) == 3
    assert {(c.host, c.version, c.params["limit"]) for c in calls} == {("threads", "v1.0", "100")}
    assert set(calls[0].params["fields"].split(",")) >= {"id", "text", "is_quote_post"}


@pytest.mark.anyio
async def test_list_posts_since_filters(
    sim: RunningSim, client: ThreadsClient, user: ThreadsUser
) -> None:
    """since narrows the listing; one before the /threads floor is raised, not refused."""
    recent = sim.world.add_threads_post(user.id, age_seconds=3600)
    sim.world.add_threads_post(user.id, age_seconds=10 * 86400)
    since = int((sim.world.now() - timedelta(days=2)).timestamp())
    assert [p.id for p in await client.list_posts(of(user), since=since)] == [recent.id]
    assert len(await client.list_posts(of(user), since=0)) == 2


@pytest.mark.anyio
async def test_post_insights_and_repost_facade(
    sim: RunningSim, client: ThreadsClient, user: ThreadsUser
) -> None:
    """All six lifetime counters in one call; a REPOST_FACADE post gives unavailable rows."""
    post = sim.world.add_threads_post(user.id, age_seconds=2 * 86400)
    rows, raw = await client.post_insights(of(user), post.id)
    assert [row.metric for row in rows] == list(POST_METRICS)
    assert all(row.value is not None and row.flag is None for row in rows)
    assert raw["data"][0]["period"] == "lifetime"
    facade = sim.world.add_threads_post(user.id, media_type="REPOST_FACADE")
    rows, raw = await client.post_insights(of(user), facade.id)
    assert raw == {"data": []}
    assert rows == [MetricRow(m, None, flag=UNAVAILABLE) for m in POST_METRICS]
    assert [c.params["metric"] for c in sim.world.log.calls(kind="threads_media_insights")] == [
        ",".join(POST_METRICS)
    ] * 2


@pytest.mark.anyio
async def test_views_series_and_totals(
    sim: RunningSim, client: ThreadsClient, user: ThreadsUser
) -> None:
    """views is one row per day with its end_time; likes..quotes one total row each."""
    until = sim.world.now().replace(hour=12, minute=0, second=0, microsecond=0)
    until -= timedelta(days=10)
    since = until - timedelta(days=3)
    metrics = ["views", "likes", "replies", "reposts", "quotes"]
    rows, _ = await client.user_insights(
        of(user), metrics, since=int(since.timestamp()), until=int(until.timestamp())
    )
    views = [row for row in rows if row.metric == "views"]
    assert len(views) == 4
    ends = [row.end_time for row in views]
    assert all(end is not None and since < end for end in ends)
    assert ends == sorted(ends)  # type: ignore[type-var]
    totals = [row for row in rows if row.metric != "views"]
    assert [row.metric for row in totals] == metrics[1:]
    assert all(row.end_time is None and row.value is not None for row in totals)


@pytest.mark.anyio
async def test_clicks_per_url_and_followers(
    sim: RunningSim, client: ThreadsClient, user: ThreadsUser
) -> None:
    """clicks give one row per link URL; followers_count is one row with the count."""
    rows, _ = await client.user_insights(
        of(user), ["clicks", "followers_count"], since=INSIGHTS_SINCE_FLOOR + 86400 * 30,
        until=INSIGHTS_SINCE_FLOOR + 86400 * 40,
    )  # fmt: skip
    clicks = {row.dimension: row for row in rows if row.metric == "clicks"}
    assert set(clicks) == {"https://example.com/a", "https://example.com/b"}
    assert all(row.breakdown == "link_url" and (row.value or 0) > 0 for row in clicks.values())
    assert MetricRow("followers_count", 1234.0) in rows


@pytest.mark.anyio
@pytest.mark.parametrize("breakdown", ["country", "city", "age", "gender"])
async def test_demographics_per_breakdown(
    sim: RunningSim, client: ThreadsClient, user: ThreadsUser, breakdown: str
) -> None:
    """follower_demographics: rows per value of the one breakdown, adding up to the followers."""
    rows, _ = await client.user_insights(of(user), ["follower_demographics"], breakdown=breakdown)
    assert rows
    assert {row.breakdown for row in rows} == {breakdown}
    assert all(row.dimension for row in rows)
    assert sum(row.value or 0 for row in rows) == 1234
    (call,) = sim.world.log.calls(kind="threads_insights")
    assert call.params["breakdown"] == breakdown


@pytest.mark.anyio
async def test_feature_not_available_for_a_profile_without_instagram(
    sim: RunningSim, client: ThreadsClient
) -> None:
    """Follower metrics of an unlinked profile raise FeatureNotAvailable naming the metric."""
    alone = sim.world.add_threads_user()
    with pytest.raises(FeatureNotAvailable) as caught:
        await client.user_insights(of(alone), ["likes", "followers_count"])
    assert caught.value.metrics == ("likes", "followers_count")
    assert caught.value.named == ("followers_count",)
    assert len(sim.world.log.calls(kind="threads_insights")) == 1  # a client error: no retry
    rows, _ = await client.user_insights(of(alone), ["likes"])
    assert [row.metric for row in rows] == ["likes"]


@pytest.mark.anyio
async def test_since_before_the_floor_is_never_sent(
    sim: RunningSim, client: ThreadsClient, user: ThreadsUser
) -> None:
    """A since before 1712991600 goes out as 1712991600, and the call succeeds."""
    rows, _ = await client.user_insights(
        of(user), ["likes"], since=1_600_000_000, until=INSIGHTS_SINCE_FLOOR + 86400
    )
    assert rows[0].metric == "likes"
    (call,) = sim.world.log.calls(kind="threads_insights")
    assert call.params["since"] == str(INSIGHTS_SINCE_FLOOR)


@pytest.mark.anyio
async def test_token_refresh_and_me(sim: RunningSim, client: ThreadsClient) -> None:
    """th_refresh_token gives a 60-day grant whose token works; a young token is refused."""
    aged = sim.world.add_threads_user(token_age_seconds=3 * 86400)
    old = aged.token  # the world's user object takes the new token
    grant = await client.refresh_token(of(aged))
    assert grant.expires_in == 5183944
    assert grant.access_token not in ("", old)
    assert grant.expires_at > datetime.now(UTC) + timedelta(days=59)
    (call,) = sim.world.log.calls(kind="refresh")
    assert (call.host, call.params["grant_type"]) == ("threads", "th_refresh_token")
    fresh = ThreadsAccount(aged.id, grant.access_token)
    assert await client.me(fresh) == {
        "id": aged.id,
        "username": aged.username,
        "name": aged.username.title(),
        "threads_biography": "",
        "is_verified": False,
    }
    with pytest.raises(AuthError):
        await client.refresh_token(fresh)


@pytest.mark.anyio
async def test_expired_token_is_an_auth_error_and_never_logged(
    sim: RunningSim, client: ThreadsClient, user: ThreadsUser, caplog: pytest.LogCaptureFixture
) -> None:
    """An expired token raises AuthError (463) after one call; no log line or error holds it."""
    sim.world.tokens.expire_token(threads_user=user.id)
    with (
        caplog.at_level(logging.DEBUG),
        caplog.at_level(logging.DEBUG, logger="httpx"),
        pytest.raises(AuthError) as caught,
    ):
        await client.list_posts(of(user))
    assert caught.value.subcode == 463
    assert len(sim.world.log.calls()) == 1
    assert "HTTP Request" in caplog.text
    for text in (caplog.text, str(caught.value), repr(caught.value), repr(client)):
        assert TOKEN not in text


@pytest.mark.anyio
async def test_transient_errors_are_retried(
    sim: RunningSim, client: ThreadsClient, user: ThreadsUser
) -> None:
    """Two 503s are retried inside the client; the third call answers."""
    sim.world.faults.add(status=503, count=2, account=user.id)
    client.transport.backoff_seconds = 0.01
    sim.world.add_threads_post(user.id)
    assert len(await client.list_posts(of(user))) == 1
    assert [c.status for c in sim.world.log.calls()] == [503, 503, 200]


@pytest.mark.anyio
async def test_throttling_pauses_the_threads_account(
    sim: RunningSim, client: ThreadsClient, user: ThreadsUser, redis: Redis
) -> None:
    """A throttle pauses `threads:<id>` in the shared pacer; the next call is not sent."""
    sim.world.faults.add(code=17, account=user.id)
    with pytest.raises(Throttled):
        await client.list_posts(of(user))
    with pytest.raises(AccountPaused):
        await client.list_posts(of(user))
    assert len(sim.world.log.calls()) == 1
    assert await Pacer(redis).pause_counts(f"threads:{user.id}") == {"throttled": 1}
