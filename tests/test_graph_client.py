"""The Graph API client: Meta's error tree, token hygiene, parsing; then the simulator over HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.redaction import MASK, scrub
from store.recording import BELOW_THRESHOLD, NOT_SUPPORTED, MetricRow
from tests.conftest import make_settings
from tests.servers import ServerThread, free_port
from workers.meta.api_errors import (
    AccountPaused,
    AppThrottled,
    AuthError,
    ClientError,
    InvalidMetric,
    MetaError,
    NotEnoughViewers,
    ObjectNotFound,
    PermissionDenied,
    Throttled,
    Transient,
    error_from_response,
)
from workers.meta.graph_api import (
    GraphClient,
    IgAccount,
    TokenGrant,
    make_http_client,
    parse_media,
    parse_page,
)
from workers.meta.metric_sets import DroppedMetrics, InsightsCall, story_calls
from workers.meta.pacing import Pacer
from workers.meta.transport import MetaTransport

TOKEN = "IGQVJ-secret-token-0123456789abcdef"
BUC_REGAIN = {
    "17841405309211844": [
        {"type": "instagram", "call_count": 100, "estimated_time_to_regain_access": 3}
    ]
}


def meta_error(code: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code,
                      "fbtrace_id": "AbCdEf123", **extra}}  # fmt: skip


ERROR_CASES: list[tuple[int, Any, type[MetaError]]] = [
    (400, meta_error(190, "Error validating access token: Session has expired",
                     error_subcode=463), AuthError),
    (400, meta_error(190, "Error validating access token: Invalid OAuth access token",
                     error_subcode=467), AuthError),
    (400, meta_error(102, "Session key invalid"), AuthError),
    (400, meta_error(10, "(#10) Not enough viewers for the media to show insights"),
     NotEnoughViewers),
    (403, meta_error(10, "(#10) Application does not have permission for this action"),
     PermissionDenied),
    (403, meta_error(200, "(#200) Requires instagram_manage_insights permission"),
     PermissionDenied),
    (400, meta_error(100, "(#100) The Media Insights API does not support the impressions "
                          "metric for this media product type."), InvalidMetric),
    (400, meta_error(100, "Unsupported get request. Object with ID '1' does not exist",
                     error_subcode=33), ObjectNotFound),
    (400, meta_error(100, "(#100) Invalid parameter"), ClientError),
    (400, meta_error(80002, "(#80002) There have been too many calls to this Instagram account.",
                     is_transient=True), Throttled),
    (400, meta_error(80001, "(#80001) There have been too many calls ..."), Throttled),
    (400, meta_error(17, "(#17) User request limit reached", is_transient=True,
                     error_subcode=2446079), Throttled),
    (403, meta_error(4, "(#4) Application request limit reached", is_transient=True),
     AppThrottled),
    (400, meta_error(613, "(#613) Calls to this api have exceeded the rate limit."), Throttled),
    (400, meta_error(32, "(#32) Page request limit reached"), Throttled),
    (500, meta_error(1, "An unknown error has occurred.", is_transient=False), Transient),
    (500, meta_error(2, "An unexpected error has occurred. Please retry your request later.",
                     is_transient=True), Transient),
    (400, meta_error(9007, "Something odd", is_transient=True), Transient),
    (502, None, Transient),
    (503, {"unexpected": "shape"}, Transient),
    (429, None, Throttled),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "expected"), ERROR_CASES)
def test_error_mapping(status: int, body: Any, expected: type[MetaError]) -> None:
    """Each Meta error family maps to its class, keeping code, subcode and trace id."""
    error = error_from_response(status, body, httpx.Headers())
    assert type(error) is expected
    assert error.http_status == status
    if body and "error" in body:
        assert error.code == body["error"]["code"]
        assert error.subcode == body["error"].get("error_subcode")
        assert error.fbtrace_id == "AbCdEf123"
        assert error.is_transient is body["error"].get("is_transient", False)


def test_auth_reason_names_the_subcode() -> None:
    """AuthError says why re-authorisation is needed."""
    error = error_from_response(400, meta_error(190, "expired", error_subcode=463))
    assert isinstance(error, AuthError)
    assert error.reason == "token expired"
    assert error.retry_after is None


def test_throttle_waits_for_the_regain_estimate_in_minutes() -> None:
    """estimated_time_to_regain_access (minutes) becomes retry_after seconds, scaled."""
    headers = httpx.Headers({"X-Business-Use-Case-Usage": json.dumps(BUC_REGAIN)})
    body = meta_error(80002, "(#80002) too many calls", is_transient=True)
    error = error_from_response(400, body, headers)
    assert isinstance(error, Throttled)
    assert error.retry_after == 180
    scaled = error_from_response(400, body, headers, minute_seconds=0.5)
    assert scaled.retry_after == 1.5


def test_app_limit_ignores_the_accounts_regain_estimate() -> None:
    """Code 4 is the app's limit: a BUC estimate (an account's) does not set its wait."""
    headers = httpx.Headers({"X-Business-Use-Case-Usage": json.dumps(BUC_REGAIN)})
    body = meta_error(4, "(#4) Application request limit reached", is_transient=True)
    error = error_from_response(403, body, headers, minute_seconds=1.0)
    assert isinstance(error, AppThrottled)
    assert error.retry_after == 5.0
    assert error.retryable


def test_retryable_says_whether_trying_again_can_help() -> None:
    """Throttled and Transient may succeed later; auth, permission and #100 errors never."""
    assert error_from_response(503, None).retryable
    assert error_from_response(400, meta_error(80002, "(#80002) too many")).retryable
    for code, subcode in ((190, 463), (10, None), (200, None), (100, 33), (100, None)):
        body = meta_error(code, "(#x) no", **({"error_subcode": subcode} if subcode else {}))
        assert not error_from_response(400, body).retryable


def test_throttle_without_estimate_uses_the_default() -> None:
    """A 429 without headers still pauses: five (scaled) minutes, or Retry-After if longer."""
    assert error_from_response(429, None).retry_after == 300
    long = error_from_response(429, None, httpx.Headers({"Retry-After": "900"}))
    assert long.retry_after == 900


@pytest.mark.parametrize(
    ("message", "dropped"),
    [
        ("(#100) The Media Insights API does not support the impressions metric", ["impressions"]),
        ("(#100) metric[0] must be one of the following values: reach, replies, views",
         ["impressions"]),
        ("(#100) Incompatible metrics (impressions) with the given media", ["impressions"]),
    ],
)  # fmt: skip
def test_invalid_metric_names_the_rejected_metric(message: str, dropped: list[str]) -> None:
    """A (#100) metric error names the requested metrics to drop, even when it lists valid ones."""
    error = error_from_response(
        400, meta_error(100, message), requested_metrics=["reach", "impressions", "views"]
    )
    assert isinstance(error, InvalidMetric)
    assert list(error.metrics) == dropped


def test_tokens_are_scrubbed_from_error_messages() -> None:
    """A message that echoes a URL with the token keeps neither the token nor client_secret."""
    body = meta_error(
        100, f"Bad request to https://graph.facebook.com/x?access_token={TOKEN}&client_secret=s3"
    )
    error = error_from_response(400, body)
    for text in (str(error), repr(error), error.message, *map(str, error.args)):
        assert TOKEN not in text
        assert "s3" not in text
    assert f"access_token={MASK}" in str(error)
    plain = MetaError(f"token {TOKEN} rejected")
    plain.redact(TOKEN)
    assert TOKEN not in str(plain)
    assert TOKEN not in repr(plain.args)
    assert scrub(f"x {TOKEN} y", [TOKEN]) == f"x {MASK} y"


def test_reprs_hide_tokens() -> None:
    """Neither the account, a refreshed grant nor the client shows a token in its repr."""
    account = IgAccount("1784", TOKEN, "instagram")
    grant = TokenGrant(TOKEN, 5184000, datetime.now(UTC))
    client = GraphClient(
        MetaTransport(httpx.AsyncClient()),
        facebook_url="http://fb",
        instagram_url="http://ig",
        version="v25.0",
    )
    for text in (repr(account), str(account), repr(grant), repr(client)):
        assert TOKEN not in text


def test_httpx_request_logs_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    """httpx's own INFO line with the request URL loses the access_token."""
    make_http_client(make_settings("sqlite://", None))
    url = httpx.URL("http://127.0.0.1/v25.0/1/stories", params={"access_token": TOKEN})
    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info('HTTP Request: %s %s "%s"', "GET", url, "HTTP/1.1 200 OK")
    assert "HTTP Request: GET" in caplog.text
    assert TOKEN not in caplog.text


def test_story_page_parsing() -> None:
    """A stories page gives media with UTC timestamps and the next link; no next ends it."""
    body = {
        "data": [
            {
                "id": "17861937508009798",
                "media_type": "IMAGE",
                "media_product_type": "STORY",
                "permalink": "https://instagram.com/stories/x/1",
                "timestamp": "2019-04-05T07:56:32+0000",
            }
        ],
        "paging": {"cursors": {"after": "QVFI"}, "next": "https://graph.facebook.com/next"},
    }
    items, nxt = parse_page(body)
    assert nxt == "https://graph.facebook.com/next"
    assert items[0].id == "17861937508009798"
    assert items[0].media_product_type == "STORY"
    assert items[0].timestamp == datetime(2019, 4, 5, 7, 56, 32, tzinfo=UTC)
    assert parse_page({"data": [], "paging": {"cursors": {}}}) == ([], None)
    assert parse_media({"id": 5}).caption is None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_connection_errors_are_transient_and_carry_no_url() -> None:
    """A refused connection is retried a bounded number of times, then raised scrubbed."""
    dead = f"http://127.0.0.1:{free_port()}"
    async with httpx.AsyncClient(timeout=2) as http:
        client = GraphClient(
            MetaTransport(http, backoff_seconds=0.01),
            facebook_url=dead,
            instagram_url=dead,
            version="v25.0",
        )
        with pytest.raises(Transient) as caught:
            await client.list_stories(IgAccount("1784", TOKEN))
    error = caught.value
    assert error.retry_after is not None
    assert TOKEN not in str(error)
    assert error.__cause__ is None
    assert error.__context__ is None


# --- Over real HTTP -------------------------------------------------------------------------
# A stand-in Graph server (Starlette under uvicorn) that answers like Meta does in
# https://developers.facebook.com/documentation/instagram-platform/reference/instagram-media/insights
# and https://developers.facebook.com/docs/graph-api/overview/rate-limiting, with a call log
# and queued faults; the tests below only use .url, .calls and .faults.

IG_USER = "17841405309211844"
DEPRECATED = {"impressions", "exits", "taps_forward", "taps_back"}
BREAKDOWN_OK = {"navigation": "story_navigation_action_type", "profile_activity": "action_type"}


class GraphStandIn:
    def __init__(self, stories: int = 3, page_size: int = 2) -> None:
        self.stories = [f"1790000000000000{i}" for i in range(stories)]
        self.page_size = page_size
        self.below_threshold: set[str] = set()
        self.calls: list[dict[str, Any]] = []
        self.faults: list[tuple[int, Any, dict[str, str]]] = []
        self.url = ""
        self.app = Starlette(
            routes=[
                Route("/{host}/refresh_access_token", self.refresh),
                Route("/{host}/{version}/{obj}/stories", self.list_stories),
                Route("/{host}/{version}/{obj}/insights", self.insights),
                Route("/{host}/{version}/{obj}/connected_threads_user", self.threads_user),
            ]
        )

    def log(self, request: Request) -> JSONResponse | None:
        params = dict(request.query_params)
        token = params.pop("access_token", None)
        self.calls.append({"path": request.url.path, "params": params, "token": token})
        if self.faults:
            status, body, headers = self.faults.pop(0)
            return JSONResponse(body, status_code=status, headers=headers)
        return None

    def insight_calls(self) -> list[dict[str, Any]]:
        return [call for call in self.calls if call["path"].endswith("/insights")]

    async def list_stories(self, request: Request) -> JSONResponse:
        fault = self.log(request)
        if fault is not None:
            return fault
        start = int(request.query_params.get("after", "0"))
        # An empty page that still has `next` comes first: clients must keep going.
        if start == 0 and "seen_empty" not in request.query_params:
            items: list[str] = []
            nxt: int | None = 0
        else:
            items = self.stories[start : start + self.page_size]
            nxt = start + self.page_size if start + self.page_size < len(self.stories) else None
        data = [
            {"id": i, "media_type": "IMAGE", "media_product_type": "STORY",
             "timestamp": "2026-11-22T10:00:00+0000"} for i in items
        ]  # fmt: skip
        paging: dict[str, Any] = {"cursors": {"before": "B", "after": str(nxt)}}
        if nxt is not None:
            fields = request.query_params.get("fields", "")
            token = self.calls[-1]["token"]
            query = urlencode(
                {"fields": fields, "after": nxt, "seen_empty": 1, "access_token": token}
            )
            paging["next"] = f"{self.url}{request.url.path}?{query}"
        return JSONResponse({"data": data, "paging": paging})

    async def insights(self, request: Request) -> JSONResponse:
        fault = self.log(request)
        if fault is not None:
            return fault
        metrics = request.query_params.get("metric", "").split(",")
        breakdown = request.query_params.get("breakdown")
        media = request.path_params["obj"]
        if media in self.below_threshold:
            message = "(#10) Not enough viewers for the media to show insights"
            return JSONResponse(meta_error(10, message), status_code=400)
        bad = [m for m in metrics if m in DEPRECATED]
        if bad:
            message = f"(#100) The Media Insights API does not support the {bad[0]} metric"
            return JSONResponse(meta_error(100, message), status_code=400)
        if breakdown and any(BREAKDOWN_OK.get(m) != breakdown for m in metrics):
            return JSONResponse(meta_error(1, "An unknown error has occurred."), status_code=500)
        return JSONResponse({"data": [self._item(media, m, breakdown) for m in metrics]})

    @staticmethod
    def _item(media: str, metric: str, breakdown: str | None) -> dict[str, Any]:
        item: dict[str, Any] = {"name": metric, "period": "lifetime", "values": [{"value": 7}],
                                "id": f"{media}/insights/{metric}/lifetime"}  # fmt: skip
        if breakdown:
            results = [{"dimension_values": ["tap_forward"], "value": 5},
                       {"dimension_values": ["tap_exit"], "value": 2}]  # fmt: skip
            item["total_value"] = {
                "value": 7, "breakdowns": [{"dimension_keys": [breakdown], "results": results}]
            }  # fmt: skip
        return item

    async def threads_user(self, request: Request) -> JSONResponse:
        return self.log(request) or JSONResponse({"data": [{"threads_user_id": "63077"}]})

    async def refresh(self, request: Request) -> JSONResponse:
        body = {"access_token": "IGQVJ-fresh-token", "token_type": "bearer", "expires_in": 5184000}
        return self.log(request) or JSONResponse(body)


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    stand_in = GraphStandIn()
    with ServerThread(stand_in.app) as server:
        stand_in.url = server.url
        yield stand_in


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client(make_settings("sqlite://", None)) as client:
        yield client


def make_client(
    http: httpx.AsyncClient, graph: GraphStandIn, redis: Redis, minute_seconds: float = 60.0
) -> GraphClient:
    return GraphClient(
        MetaTransport(
            http, pacer=Pacer(redis, minute_seconds=minute_seconds), backoff_seconds=0.01
        ),
        facebook_url=f"{graph.url}/fb",
        instagram_url=f"{graph.url}/ig",
        version="v25.0",
        dropped=DroppedMetrics(redis),
    )


FB_ACCOUNT = IgAccount(IG_USER, TOKEN, "facebook")


@pytest.mark.anyio
async def test_stories_follow_next_through_an_empty_page(
    http: httpx.AsyncClient, graph: GraphStandIn, redis: Redis
) -> None:
    """Listing follows paging.next past an empty page to the end, with the token each time."""
    graph.stories = [f"1790000000000000{i}" for i in range(5)]
    stories = await make_client(http, graph, redis).list_stories(FB_ACCOUNT)
    assert [s.id for s in stories] == graph.stories
    assert stories[0].timestamp == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert len(graph.calls) == 4
    assert all(call["token"] == TOKEN for call in graph.calls)
    assert all(call["path"].startswith(f"/fb/v25.0/{IG_USER}/stories") for call in graph.calls)


@pytest.mark.anyio
async def test_instagram_login_accounts_use_the_instagram_host(
    http: httpx.AsyncClient, graph: GraphStandIn, redis: Redis
) -> None:
    """The host follows the account's login type."""
    await make_client(http, graph, redis).list_stories(IgAccount(IG_USER, TOKEN, "instagram"))
    assert {call["path"].split("/")[1] for call in graph.calls} == {"ig"}


@pytest.mark.anyio
async def test_story_snapshot_is_three_clean_calls(
    http: httpx.AsyncClient, graph: GraphStandIn, redis: Redis
) -> None:
    """A snapshot is 3 insights calls: no deprecated metric, no breakdown mixed with others."""
    result = await make_client(http, graph, redis).story_insights(FB_ACCOUNT, graph.stories[0])
    calls = graph.insight_calls()
    assert len(calls) == 3
    for call in calls:
        metrics = call["params"]["metric"].split(",")
        assert not set(metrics) & DEPRECATED
        assert "breakdown" not in call["params"] or len(metrics) == 1
    assert result.flag is None
    assert set(result.raw) == {"plain", "navigation", "profile_activity"}
    key = "story_navigation_action_type"
    assert MetricRow("navigation", 5.0, key, "tap_forward") in result.rows
    assert MetricRow("reach", 7.0) in result.rows
    assert len(result.rows) == 9 + 3 + 3


@pytest.mark.anyio
async def test_not_enough_viewers(
    http: httpx.AsyncClient, graph: GraphStandIn, redis: Redis
) -> None:
    """Error 10 raises NotEnoughViewers; a snapshot becomes null rows flagged below_threshold."""
    client = make_client(http, graph, redis)
    graph.below_threshold.add(graph.stories[0])
    with pytest.raises(NotEnoughViewers):
        await client.insights(FB_ACCOUNT, graph.stories[0], story_calls("v25.0")[0])
    result = await client.story_insights(FB_ACCOUNT, graph.stories[0])
    assert result.flag == BELOW_THRESHOLD
    assert {row.flag for row in result.rows} == {BELOW_THRESHOLD}
    assert {row.value for row in result.rows} == {None}
    assert len(graph.insight_calls()) == 2  # one each: the snapshot stopped at the first


@pytest.mark.anyio
async def test_deprecated_metric_is_dropped_and_the_rest_captured(
    http: httpx.AsyncClient, graph: GraphStandIn, redis: Redis
) -> None:
    """A metric Meta rejects (#100) is retried without, remembered for that media, and not
    asked again by its next capture; one media does not drop it for the version."""
    plain, *rest = story_calls("v25.0")
    calls = [InsightsCall("plain", ("impressions", *plain.metrics)), *rest]
    result = await make_client(http, graph, redis).story_insights(FB_ACCOUNT, "1", calls)
    assert result.dropped == ("impressions",)
    assert {row.metric for row in result.rows} == {
        *plain.metrics, "navigation", "profile_activity", "impressions"
    }  # fmt: skip
    assert MetricRow("impressions", None, flag=NOT_SUPPORTED) in result.rows
    assert len(graph.insight_calls()) == 4
    assert await DroppedMetrics(redis).dropped("v25.0", ["impressions"]) == set()
    graph.calls.clear()
    await make_client(http, graph, redis).story_insights(FB_ACCOUNT, "1", calls)
    assert len(graph.insight_calls()) == 3
    assert all("impressions" not in c["params"]["metric"] for c in graph.insight_calls())


@pytest.mark.anyio
async def test_transient_errors_are_retried_then_succeed(
    http: httpx.AsyncClient, graph: GraphStandIn, redis: Redis
) -> None:
    """A 502 and a code-2 error are retried inside the client; the third try succeeds."""
    graph.faults = [(502, None, {}), (500, meta_error(2, "retry later", is_transient=True), {})]
    user = await make_client(http, graph, redis).connected_threads_user(FB_ACCOUNT)
    assert user == "63077"
    assert len(graph.calls) == 3


@pytest.mark.anyio
async def test_transient_retries_are_bounded(
    http: httpx.AsyncClient, graph: GraphStandIn, redis: Redis
) -> None:
    """Three failures in a row end in Transient after exactly three calls, no storm."""
    graph.faults = [(503, None, {})] * 5
    with pytest.raises(Transient):
        await make_client(http, graph, redis).connected_threads_user(FB_ACCOUNT)
    assert len(graph.calls) == 3


@pytest.mark.anyio
async def test_throttling_pauses_the_account_for_every_worker(
    http: httpx.AsyncClient, graph: GraphStandIn, redis: Redis, redis_url: str
) -> None:
    """80002 pauses the account for the regain estimate; no call is made until it lapses."""
    headers = {"X-Business-Use-Case-Usage": json.dumps(BUC_REGAIN).replace(
        "17841405309211844", IG_USER)}  # fmt: skip
    body = meta_error(80002, "(#80002) There have been too many calls", is_transient=True)
    graph.faults = [(400, body, headers)]
    with pytest.raises(Throttled) as caught:
        await make_client(http, graph, redis, minute_seconds=1.0).list_stories(FB_ACCOUNT)
    assert 3.0 <= caught.value.retry_after <= 3.31  # 3 "minutes" of 1 s, plus jitter
    assert len(graph.calls) == 1
    other_worker = Redis.from_url(redis_url)
    try:
        second = make_client(http, graph, other_worker, minute_seconds=1.0)
        with pytest.raises(AccountPaused) as paused:
            await second.story_insights(FB_ACCOUNT, graph.stories[0])
        assert 0 < paused.value.retry_after <= caught.value.retry_after
        assert len(graph.calls) == 1
        with anyio.fail_after(10):
            while await second.pacer.remaining(f"ig:{IG_USER}") > 0:  # type: ignore[union-attr]
                await anyio.sleep(0.02)
        await second.story_insights(FB_ACCOUNT, graph.stories[0])
    finally:
        await other_worker.aclose()
    assert len(graph.calls) == 4
    assert await Pacer(redis).pause_counts(f"ig:{IG_USER}") == {"throttled": 1}


@pytest.mark.anyio
async def test_expired_token_is_an_auth_error_without_retry(
    http: httpx.AsyncClient, graph: GraphStandIn, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """190/463 raises AuthError after one call, and neither it nor the logs hold the token."""
    body = meta_error(190, "Error validating access token: Session has expired", error_subcode=463)
    graph.faults = [(400, body, {})] * 3
    with (
        caplog.at_level(logging.DEBUG),
        caplog.at_level(logging.DEBUG, logger="httpx"),
        pytest.raises(AuthError) as caught,
    ):
        await make_client(http, graph, redis).list_stories(FB_ACCOUNT)
    assert caught.value.subcode == 463
    assert len(graph.calls) == 1
    assert TOKEN not in str(caught.value)
    assert "HTTP Request" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.anyio
async def test_ig_token_refresh(http: httpx.AsyncClient, graph: GraphStandIn, redis: Redis) -> None:
    """IG Login tokens refresh on the instagram host; the grant says when it runs out."""
    client = make_client(http, graph, redis)
    grant = await client.refresh_ig_token(IgAccount(IG_USER, TOKEN, "instagram"))
    assert grant.access_token == "IGQVJ-fresh-token"
    assert grant.expires_in == 5184000
    assert graph.calls[0]["path"] == "/ig/refresh_access_token"
    assert graph.calls[0]["params"] == {"grant_type": "ig_refresh_token"}
    with pytest.raises(ValueError, match="Instagram Login"):
        await client.refresh_ig_token(FB_ACCOUNT)
