"""The Instagram Graph API client: stories, feed posts and Reels, their insights, Threads link,
token refresh.

It takes the worker's shared httpx.AsyncClient; parsing is pure (dict in, values out).
Tokens travel as the `access_token` query parameter and never reach logs, errors or reprs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from redis.asyncio import Redis

from core.config import Settings
from store.recording import BELOW_THRESHOLD, NOT_SUPPORTED, MetricRow
from workers.meta.api_errors import InvalidMetric, MetaError, NotEnoughViewers
from workers.meta.metric_drops import MEDIA, DroppedMetrics, Refusal
from workers.meta.metric_sets import (
    InsightsCall,
    flagged_rows,
    parse_insights,
    parse_time,
    story_calls,
)
from workers.meta.pacing import Pacer
from workers.meta.token_info import TokenInfo, parse_token_info
from workers.meta.transport import MetaTransport, on_host, parse_grant
from workers.meta.transport import TokenGrant as TokenGrant  # re-exported: callers import it here
from workers.meta.transport import make_http_client as make_http_client  # re-exported

log = logging.getLogger(__name__)

STORY_FIELDS = "id,media_type,media_product_type,permalink,timestamp,caption"
MEDIA_FIELDS = STORY_FIELDS + ",media_url,thumbnail_url,username"
MAX_PAGES = 50  # a day holds at most 100 stories; this only bounds a misbehaving `next`
LISTING_FIELDS = "id,media_product_type,media_type,timestamp,permalink,caption"
MEDIA_MAX_PAGES = 400  # the /media edge lists at most 10K media, 25 a page


class IgCredentials(Protocol):
    """What a call needs of an account; models.accounts.Account fits, and so does IgAccount."""

    @property
    def ig_user_id(self) -> str: ...
    @property
    def ig_token(self) -> str: ...
    @property
    def login(self) -> str: ...


@dataclass(frozen=True)
class IgAccount:
    """A plain, session-free copy of an account's credentials (the token hidden from repr)."""

    ig_user_id: str
    ig_token: str = field(repr=False)
    login: str = "facebook"


@dataclass(frozen=True)
class IgMedia:
    """One IG media object as listed or fetched; `raw` is Meta's item as returned."""

    id: str
    media_type: str | None = None
    media_product_type: str | None = None
    permalink: str | None = None
    timestamp: datetime | None = None
    caption: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class StoryInsights:
    """One story snapshot's worth of rows; `flag` is set when Meta withheld the whole capture."""

    rows: list[MetricRow]
    raw: dict[str, Any]
    api_version: str
    dropped: tuple[str, ...] = ()
    flag: str | None = None


def parse_media(item: Mapping[str, Any]) -> IgMedia:
    def text(name: str) -> str | None:
        value = item.get(name)
        return str(value) if value is not None else None

    return IgMedia(
        id=str(item["id"]),
        media_type=text("media_type"),
        media_product_type=text("media_product_type"),
        permalink=text("permalink"),
        timestamp=parse_time(item.get("timestamp")),
        caption=text("caption"),
        raw=dict(item),
    )


def parse_page(body: Any) -> tuple[list[IgMedia], str | None]:
    """One page of an edge: its media and the `paging.next` URL (None on the last page)."""
    body = body if isinstance(body, dict) else {}
    data = body.get("data") if isinstance(body.get("data"), list) else []
    items = [parse_media(i) for i in data if isinstance(i, dict) and i.get("id") is not None]
    paging = body.get("paging") if isinstance(body.get("paging"), dict) else {}
    nxt = paging.get("next")
    return items, nxt if isinstance(nxt, str) and nxt else None


class GraphClient:
    """Instagram Graph API calls for one worker process; holds no token of its own.

    Requests go through workers.meta.transport.MetaTransport under the pacer key
    `ig:<ig_user_id>`: shared pause first, usage headers read, Transient failures retried
    a bounded number of times, everything else raised from workers.meta.api_errors.
    """

    def __init__(
        self,
        transport: MetaTransport,
        *,
        facebook_url: str,
        instagram_url: str,
        version: str,
        dropped: DroppedMetrics | None = None,
    ) -> None:
        self.transport = transport
        self.urls = {"facebook": facebook_url.rstrip("/"), "instagram": instagram_url.rstrip("/")}
        self.version = version
        self.dropped = dropped

    @classmethod
    def from_settings(
        cls, transport: MetaTransport, settings: Settings, redis: Redis | None
    ) -> GraphClient:
        """The worker's client: hosts and version from Settings, dropped metrics in Redis."""
        return cls(
            transport,
            facebook_url=settings.facebook_graph_url,
            instagram_url=settings.instagram_graph_url,
            version=settings.graph_api_version,
            dropped=DroppedMetrics(redis) if redis is not None else None,
        )

    def __repr__(self) -> str:
        return f"GraphClient(urls={self.urls!r}, version={self.version!r})"

    @property
    def pacer(self) -> Pacer | None:
        """The transport's pacer, so callers can read an account's remaining pause."""
        return self.transport.pacer

    def base_url(self, account: IgCredentials) -> str:
        """graph.facebook.com for Facebook Login accounts, graph.instagram.com for IG Login."""
        try:
            return self.urls[account.login]
        except KeyError:
            msg = f"unknown login type {account.login!r} (facebook or instagram)"
            raise ValueError(msg) from None

    async def list_stories(self, account: IgCredentials) -> list[IgMedia]:
        """Every live story of the account, following `paging.next` to the end."""
        return await self._list(account, "stories", STORY_FIELDS, MAX_PAGES)

    async def list_media(
        self,
        account: IgCredentials,
        *,
        newer_than: datetime | None = None,
        on_page: Callable[[list[IgMedia]], None] | None = None,
    ) -> list[IgMedia]:
        """The account's feed posts and Reels (the /media edge, newest first), page after
        page until one reaches media older than `newer_than` (None: all, Meta's 10K most
        recent: https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/media).
        `on_page(items)` sees each page as it comes (a backfill stores as it goes)."""

        def reached(items: list[IgMedia]) -> bool:
            if on_page is not None:
                on_page(items)
            return newer_than is not None and any(
                m.timestamp is not None and m.timestamp < newer_than for m in items
            )

        found = await self._list(account, "media", LISTING_FIELDS, MEDIA_MAX_PAGES, reached)
        return [m for m in found if not (newer_than and m.timestamp and m.timestamp < newer_than)]

    async def _list(
        self,
        account: IgCredentials,
        edge: str,
        fields: str,
        max_pages: int,
        enough: Callable[[list[IgMedia]], bool] | None = None,
    ) -> list[IgMedia]:
        """An edge's media, following `paging.next` until the end or `enough(page)`."""
        base = self.base_url(account)
        url: str | None = f"{base}/{self.version}/{account.ig_user_id}/{edge}"
        params: dict[str, str] = {"fields": fields}
        found: list[IgMedia] = []
        seen: set[str] = set()
        # Bounded, and never follow a `next` off the account's host: the token goes with it.
        while url is not None and url not in seen and len(seen) < max_pages:
            if not on_host(base, url):
                log.warning("not following a paging.next link to another host")
                break
            seen.add(url)
            items, url = parse_page(await self._get(account, url, params))
            params = {}  # `next` already carries the fields and the cursor
            found.extend(items)
            if enough is not None and enough(items):
                break
        return found

    async def get_media(
        self, account: IgCredentials, media_id: str, fields: str = MEDIA_FIELDS
    ) -> IgMedia:
        url = f"{self.base_url(account)}/{self.version}/{media_id}"
        return parse_media(await self._get(account, url, {"fields": fields}))

    async def insights(
        self, account: IgCredentials, media_id: str, call: InsightsCall
    ) -> tuple[list[MetricRow], dict[str, Any]]:
        """One insights request: its rows and the body (paging removed) to archive as raw."""
        params = {"metric": ",".join(call.metrics)}
        if call.breakdown:
            params["breakdown"] = call.breakdown
        url = f"{self.base_url(account)}/{self.version}/{media_id}/insights"
        body = await self._get(account, url, params, metrics=call.metrics)
        raw = {key: value for key, value in body.items() if key != "paging"}
        return parse_insights(body, call.metrics, call.breakdown), raw

    async def account_insights(
        self, account: IgCredentials, params: Mapping[str, str], metrics: Sequence[str]
    ) -> dict[str, Any]:
        """GET /{ig-user-id}/insights with `params` (metric, period, metric_type, breakdown,
        timeframe, since, until): Meta's body (workers.captures.account_insights reads it)."""
        url = f"{self.base_url(account)}/{self.version}/{account.ig_user_id}/insights"
        return await self._get(account, url, params, metrics=metrics)

    async def story_insights(
        self,
        account: IgCredentials,
        media_id: str,
        calls: Sequence[InsightsCall] | None = None,
    ) -> StoryInsights:
        """One snapshot: the version's calls (3), without the metrics this media refused or
        the version dropped; each of those is a null row flagged not_supported.

        Error 10 "Not enough viewers" ends the capture at once with below_threshold rows.
        """
        calls = tuple(calls or story_calls(self.version))
        wanted = [m for call in calls for m in call.metrics]
        skip = await self._refusals(media_id, wanted)
        rows: list[MetricRow] = []
        raw: dict[str, Any] = {}
        for call in calls:
            try:
                got, body = await self._insights_dropping(account, media_id, call, skip)
            except NotEnoughViewers as exc:
                rows = flagged_rows([m for m in wanted if m not in skip], BELOW_THRESHOLD)
                raw = {"error": {"code": exc.code, "message": exc.message}}
                return self._snapshot(rows, raw, skip, BELOW_THRESHOLD)
            rows.extend(got)
            if body is not None:
                raw[call.name] = body
        if self.dropped is not None:
            await self.dropped.answered(self.version, [m for m in wanted if m not in skip])
        return self._snapshot(rows, raw, skip)

    def _snapshot(
        self,
        rows: list[MetricRow],
        raw: dict[str, Any],
        skip: Mapping[str, Refusal],
        flag: str | None = None,
    ) -> StoryInsights:
        """The rows plus a null not_supported row per metric not asked, so a reader tells
        "not asked" from zero; Meta's reasons go in the raw."""
        names = sorted(skip)
        if names:
            rows = rows + flagged_rows(names, NOT_SUPPORTED)
            raw = {**raw, "not_supported": {m: skip[m].to_raw() for m in names}}
        return StoryInsights(rows, raw, self.version, tuple(names), flag)

    async def connected_threads_user(self, account: IgCredentials) -> str | None:
        """The Threads user id linked to a Facebook Login account (None if none, or IG Login,
        where this edge does not exist)."""
        if account.login != "facebook":
            return None
        url = f"{self.urls['facebook']}/{self.version}/{account.ig_user_id}/connected_threads_user"
        body = await self._get(account, url, {"fields": "threads_user_id"})
        data = body.get("data")
        first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        found = first.get("threads_user_id")
        return str(found) if found else None

    async def whoami(self, account: IgCredentials) -> dict[str, Any]:
        """Who the token says it is: Instagram Login's /me (`user_id` is the professional
        account id, https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/get-started),
        or, with Facebook Login, the IG user itself, which only its own token can read."""
        base = self.base_url(account)
        if account.login == "instagram":
            return await self._get(
                account, f"{base}/{self.version}/me", {"fields": "user_id,username"}
            )
        url = f"{base}/{self.version}/{account.ig_user_id}"
        return await self._get(account, url, {"fields": "id,username"})

    async def refresh_ig_token(self, account: IgCredentials) -> TokenGrant:
        """Refresh an Instagram Login long-lived token (>= 24 h old, unexpired): 60 more days."""
        if account.login != "instagram":
            msg = "refresh_access_token is for Instagram Login tokens only"
            raise ValueError(msg)
        url = f"{self.urls['instagram']}/refresh_access_token"
        return parse_grant(await self._get(account, url, {"grant_type": "ig_refresh_token"}))

    async def _refusals(self, media_id: str, metrics: Sequence[str]) -> dict[str, Refusal]:
        if self.dropped is None:
            return {}
        return await self.dropped.refusals(self.version, media_id, metrics)

    async def _insights_dropping(
        self,
        account: IgCredentials,
        media_id: str,
        call: InsightsCall,
        skip: dict[str, Refusal],
    ) -> tuple[list[MetricRow], dict[str, Any] | None]:
        """Ask `call` without the skipped metrics; one that Meta refuses (#100) is added to
        `skip`, remembered for this media, and the call asked again without it."""
        todo = call.without(skip)
        while todo is not None:
            try:
                return await self.insights(account, media_id, todo)
            except InvalidMetric as exc:
                bad = [m for m in exc.metrics if m in todo.metrics]
                if not bad:
                    raise
                for metric in bad:
                    skip[metric] = await self._refuse(media_id, metric, exc.message)
                todo = todo.without(bad)
        return [], None

    async def _refuse(self, media_id: str, metric: str, message: str) -> Refusal:
        log.warning(
            "metric %s refused for media %s: %s",
            metric,
            media_id,
            message,
            extra={"media_id": media_id},
        )
        if self.dropped is not None and await self.dropped.refuse(
            self.version, media_id, metric, reason=message
        ):
            log.warning("metric %s dropped for %s: several media refused it", metric, self.version)
        return Refusal(MEDIA, message)

    async def _get(
        self,
        account: IgCredentials,
        url: str,
        params: Mapping[str, str],
        *,
        metrics: Sequence[str] = (),
    ) -> dict[str, Any]:
        """One paced, retried GET under the account's pacer key `ig:<ig_user_id>`."""
        key = f"ig:{account.ig_user_id}"
        return await self.transport.get(key, account.ig_token, url, params, metrics=metrics)

    async def debug_token(
        self, account: IgCredentials, *, app_token: str | None = None
    ) -> TokenInfo:
        """What Meta knows of a Facebook Login token: its expiry and data-access expiry.

        debug_token needs "an app access token or an app developer's user access token for
        the app" (https://developers.facebook.com/docs/graph-api/reference/debug_token): the
        app token (`{app-id}|{app-secret}`) when given, else the token inspects itself, which
        Meta allows when its user has a role on the app. Neither token reaches an error.
        """
        if account.login != "facebook":
            msg = "debug_token is asked for Facebook Login tokens only"
            raise ValueError(msg)
        url = f"{self.urls['facebook']}/{self.version}/debug_token"
        params = {"input_token": account.ig_token}
        access = app_token or account.ig_token
        try:
            body = await self.transport.get(f"ig:{account.ig_user_id}", access, url, params)
        except MetaError as exc:
            exc.redact(account.ig_token, app_token)
            raise
        return parse_token_info(body)
