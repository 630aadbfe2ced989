"""The Threads API client (graph.threads.net/v1.0): posts, post and user insights, tokens.

Requests go through workers.meta.transport.MetaTransport (pacer key `threads:<threads_user_id>`);
parsing is pure. Rules from https://developers.facebook.com/docs/threads/insights (TINS):
- user insights: `views` is a daily time series, likes/replies/reposts/quotes/followers_count
  are totals, `clicks` are per-URL `link_total_values`, `follower_demographics` needs exactly
  one breakdown; `since` earlier than 1712991600 is rejected, so it is clamped, never sent.
- post insights are lifetime counters; REPOST_FACADE posts answer an empty array, which is
  "no data", not zero, so those metrics become `unavailable` rows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from core.config import Settings
from store.recording import UNAVAILABLE, MetricRow
from workers.meta.api_errors import InvalidMetric
from workers.meta.metric_sets import parse_insights, parse_time
from workers.meta.transport import MetaTransport, TokenGrant, next_page, parse_grant

log = logging.getLogger(__name__)

# https://developers.facebook.com/docs/threads/insights: "any timestamp before that will be
# rejected"; /threads documents its own, older floor.
INSIGHTS_SINCE_FLOOR: Final = 1712991600
LIST_SINCE_FLOOR: Final = 1688540400
POST_FIELDS: Final = (
    "id,media_product_type,media_type,permalink,text,timestamp,shortcode,is_quote_post"
)
POST_METRICS: Final = ("views", "likes", "replies", "reposts", "quotes", "shares")
DEMOGRAPHIC_BREAKDOWNS: Final = frozenset({"country", "city", "age", "gender"})
ME_FIELDS: Final = "id,username,name,threads_biography,is_verified"
PAGE_LIMIT: Final = 100  # the documented maximum; the default is 25
MAX_PAGES: Final = 200  # 20,000 posts; only bounds a misbehaving `next`


@dataclass(frozen=True)
class ThreadsAccount:
    """A session-free copy of a Threads profile's credentials (the token hidden from repr)."""

    threads_user_id: str
    threads_token: str = field(repr=False)


@dataclass(frozen=True)
class ThreadsPost:
    """One post of /{threads-user-id}/threads; `raw` is Meta's item as returned."""

    id: str
    media_type: str | None = None
    permalink: str | None = None
    text: str | None = None
    timestamp: datetime | None = None
    shortcode: str | None = None
    is_quote_post: bool | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def parse_post(item: Mapping[str, Any]) -> ThreadsPost:
    texts = ("media_type", "permalink", "text", "shortcode")
    quote = item.get("is_quote_post")
    return ThreadsPost(
        id=str(item["id"]),
        timestamp=parse_time(item.get("timestamp")),
        is_quote_post=quote if isinstance(quote, bool) else None,
        raw=dict(item),
        **{name: str(item[name]) if item.get(name) is not None else None for name in texts},
    )


def parse_posts(body: Any) -> list[ThreadsPost]:
    data = body.get("data") if isinstance(body, dict) else None
    items = data if isinstance(data, list) else []
    return [parse_post(i) for i in items if isinstance(i, dict) and i.get("id") is not None]


def _number(value: Any) -> float | None:
    """Counts as floats; anything else (a bool included) is no value rather than a guess."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if number else None


def _empty_row(name: str, breakdown: str | None) -> MetricRow:
    """No data for a metric: a null value, with the breakdown it would have had."""
    key = {"clicks": "link_url", "follower_demographics": breakdown}.get(name)
    return MetricRow(name, None, key, flag=UNAVAILABLE)


def _total_rows(name: str, total: Mapping[str, Any], breakdown: str | None) -> list[MetricRow]:
    rows = [MetricRow(name, _number(total["value"]))] if "value" in total else []
    for part in [p for p in total.get("breakdowns") or [] if isinstance(p, dict)]:
        keys = ",".join(str(k) for k in part.get("dimension_keys") or []) or breakdown
        for result in part.get("results") or []:
            dimension = ",".join(str(v) for v in result.get("dimension_values") or [])
            rows.append(MetricRow(name, _number(result.get("value")), keys, dimension or None))
    return rows


def _user_item_rows(item: Mapping[str, Any], breakdown: str | None) -> list[MetricRow]:
    """Rows of one metric by the shape Meta answered: per URL, total (with breakdowns), series."""
    name = str(item["name"])
    links, total = item.get("link_total_values"), item.get("total_value")
    if isinstance(links, list):
        rows = [
            MetricRow(name, _number(entry.get("value")), "link_url", str(entry["link_url"]))
            for entry in links
            if isinstance(entry, dict) and entry.get("link_url")
        ]
    elif isinstance(total, dict):
        rows = _total_rows(name, total, breakdown)
    else:
        rows = [
            MetricRow(name, _number(v.get("value")), end_time=parse_time(v.get("end_time")))
            for v in item.get("values") or []
            if isinstance(v, dict)
        ]
    return rows or [_empty_row(name, breakdown)]


def parse_user_insights(
    body: Any, metrics: Sequence[str], breakdown: str | None = None
) -> list[MetricRow]:
    """threads_insights JSON to rows; requested metrics missing or empty become `unavailable`
    rows, e.g. follower_demographics under 100 followers, which Meta leaves out of `data`."""
    data = body.get("data") if isinstance(body, dict) else None
    items = (
        [i for i in data if isinstance(i, dict) and i.get("name")] if isinstance(data, list) else []
    )
    rows = [row for item in items for row in _user_item_rows(item, breakdown)]
    seen = {str(item["name"]) for item in items}
    return rows + [_empty_row(m, breakdown) for m in metrics if m not in seen]


def user_insights_params(
    metrics: Sequence[str], since: int | None, until: int | None, breakdown: str | None
) -> dict[str, str]:
    """The query of threads_insights; what Meta would refuse is refused here, no call spent.

    A `since` before Meta's floor is raised to it: Meta rejects it rather than clamping.
    """
    demographics = "follower_demographics" in metrics
    fits = breakdown in DEMOGRAPHIC_BREAKDOWNS if demographics else breakdown is None
    if not metrics or not fits:
        msg = "follower_demographics takes one breakdown (country, city, age or gender), no other"
        raise ValueError(msg if metrics else "user_insights needs at least one metric")
    params = {"metric": ",".join(metrics)}
    if since is not None:
        params["since"] = str(max(since, INSIGHTS_SINCE_FLOOR))
    if until is not None:
        params["until"] = str(until)
    if breakdown is not None:
        params["breakdown"] = breakdown
    return params


def _raw(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body to archive: paging links carry the token, and are of no use later."""
    return {key: value for key, value in body.items() if key != "paging"}


class ThreadsClient:
    """Threads API calls for one worker process; holds no token of its own.

    The pacer key is `threads:<threads_user_id>`: a Threads profile has its own budget
    ("4800 * impressions" per app and user, https://developers.facebook.com/docs/threads/overview),
    apart from its Instagram twin.
    """

    def __init__(
        self,
        transport: MetaTransport,
        *,
        base_url: str,
        version: str = "v1.0",
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.transport = transport
        self.base_url = base_url.rstrip("/")
        self.version = version
        self.max_pages = max(1, max_pages)

    @classmethod
    def from_settings(cls, transport: MetaTransport, settings: Settings) -> ThreadsClient:
        """The worker's client: host and version from Settings."""
        return cls(
            transport,
            base_url=settings.threads_graph_url,
            version=settings.threads_api_version,
        )

    def __repr__(self) -> str:
        return f"ThreadsClient(base_url={self.base_url!r}, version={self.version!r})"

    async def list_posts(
        self, account: ThreadsAccount, *, since: int | None = None
    ) -> list[ThreadsPost]:
        """Every post of the profile (newest first), `limit=100` a page, to the last page."""
        url = f"{self.base_url}/{self.version}/{account.threads_user_id}/threads"
        params = {"fields": POST_FIELDS, "limit": str(PAGE_LIMIT)}
        if since is not None:
            params["since"] = str(max(since, LIST_SINCE_FLOOR))
        posts: list[ThreadsPost] = []
        request: tuple[str, dict[str, str]] | None = (url, params)
        seen: set[str] = set()  # a `next` pointing back must not loop until max_pages
        while request is not None and repr(request) not in seen and len(seen) < self.max_pages:
            seen.add(repr(request))
            body = await self._get(account, *request)
            posts.extend(parse_posts(body))
            request = next_page(self.base_url, url, params, body)
        return posts

    async def post_insights(
        self, account: ThreadsAccount, post_id: str, *, metrics: Sequence[str] = POST_METRICS
    ) -> tuple[list[MetricRow], dict[str, Any]]:
        """A post's lifetime counters in one call, and the body to archive as raw.

        views and shares are "in development" (TINS): a metric Meta rejects (#100) is left
        out and the call repeated, so one withdrawn metric cannot stop every capture.
        """
        todo = list(metrics)
        url = f"{self.base_url}/{self.version}/{post_id}/insights"
        while True:
            try:
                body = await self._get(account, url, {"metric": ",".join(todo)}, metrics=todo)
                return parse_insights(body, todo), _raw(body)
            except InvalidMetric as exc:
                bad = [m for m in exc.metrics if m in todo]
                if not bad or len(bad) == len(todo):
                    raise
                log.warning("leaving out Threads metrics %s: %s", ",".join(bad), exc.message)
                todo = [m for m in todo if m not in bad]

    async def user_insights(
        self,
        account: ThreadsAccount,
        metrics: Sequence[str],
        *,
        since: int | None = None,
        until: int | None = None,
        breakdown: str | None = None,
    ) -> tuple[list[MetricRow], dict[str, Any]]:
        """Profile insights over [since, until] (Meta's default: yesterday and today).

        Raises FeatureNotAvailable for follower metrics of a profile without Instagram; ask
        for those in a call of their own so the other metrics are still captured.
        """
        params = user_insights_params(metrics, since, until, breakdown)
        url = f"{self.base_url}/{self.version}/{account.threads_user_id}/threads_insights"
        body = await self._get(account, url, params, metrics=metrics)
        return parse_user_insights(body, metrics, breakdown), _raw(body)

    async def refresh_token(self, account: ThreadsAccount) -> TokenGrant:
        """Refresh a long-lived token (>= 24 h old, unexpired): 60 more days from now."""
        url = f"{self.base_url}/refresh_access_token"
        return parse_grant(await self._get(account, url, {"grant_type": "th_refresh_token"}))

    async def me(self, account: ThreadsAccount, *, fields: str = ME_FIELDS) -> dict[str, Any]:
        """The token's own profile: checks a token and reads the id Threads knows it by."""
        return await self._get(account, f"{self.base_url}/{self.version}/me", {"fields": fields})

    async def _get(
        self,
        account: ThreadsAccount,
        url: str,
        params: Mapping[str, str],
        *,
        metrics: Sequence[str] = (),
    ) -> dict[str, Any]:
        key = f"threads:{account.threads_user_id}"
        return await self.transport.get(key, account.threads_token, url, params, metrics=metrics)
