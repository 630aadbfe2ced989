"""Threads API routes (graph.threads.net, /v1.0/), after Meta's Threads insights page
(TINS, https://developers.facebook.com/docs/threads/insights).

- /{threads-user-id}/threads: limit default 25, max 100; `before`/`after` cursors (not
  both); `since` >= 1688540400. The user's replies are not listed (they have their own
  /replies edge, https://developers.facebook.com/docs/threads/retrieve-and-manage-replies),
  nor are deleted posts, whose media routes answer (#100) like any unknown object.
- /{threads-media-id}/insights: lifetime counters; REPOST_FACADE posts give `{"data": []}`.
- /{threads-user-id}/threads_insights: `views` is a daily time series (Pacific days, values
  with `end_time` at the day's end); likes/replies/reposts/quotes are totals over every
  Pacific day the range touches (each day a fixed number, so sums can be checked), and with
  no since/until over "yesterday through today" (TINS): a client that files that answer
  under one day counts every day twice, and one asking UTC days counts each Pacific day in
  two windows; clicks are `link_total_values` per URL; followers_count and
  follower_demographics ignore the range, need a linked Instagram account (else
  THREADS_API__FEATURE_NOT_AVAILABLE) and demographics need exactly one breakdown
  (country|city|age|gender) and >= 100 followers (below that the metric is left out of
  `data` [UNCERTAIN]); `since` < 1712991600 is refused.
- Error bodies use type THApiException [UNCERTAIN], see metasim.api.error_bodies.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from metasim.api import error_bodies
from metasim.api.instagram import refresh_grant
from metasim.api.paging import limit_param, page_body, paginate
from metasim.api.request import Ctx, meta_time, parse_fields, parse_time, pick, split_list
from metasim.world import insights
from metasim.world.entities import ThreadsPost, ThreadsUser

LIST_SINCE_FLOOR: Final = 1688540400
INSIGHTS_SINCE_FLOOR: Final = 1712991600
POST_FIELDS: Final = frozenset(
    {"id", "media_product_type", "media_type", "media_url", "permalink", "owner", "username",
     "text", "timestamp", "shortcode", "thumbnail_url", "is_quote_post", "is_reply",
     "replied_to", "root_post"}
)  # fmt: skip
USER_FIELDS: Final = frozenset({"id", "username", "name", "threads_biography", "is_verified"})
USER_METRICS: Final = (
    "views", "likes", "replies", "reposts", "quotes", "clicks", "followers_count",
    "follower_demographics",
)  # fmt: skip
NEEDS_INSTAGRAM: Final = ("followers_count", "follower_demographics")
# Per-day bases relative to a user's daily profile views.
DAILY_SHARE: Final = {
    "likes": 0.3,
    "replies": 0.05,
    "reposts": 0.03,
    "quotes": 0.01,
    "clicks": 0.04,
}
TITLES: Final = {
    "views": "Views", "likes": "Likes", "replies": "Replies", "reposts": "Reposts",
    "quotes": "Quotes", "shares": "Shares", "clicks": "Clicks",
    "followers_count": "Followers", "follower_demographics": "Follower demographics",
}  # fmt: skip


def _post_values(post: ThreadsPost, username: str) -> dict[str, Any]:
    shortcode = f"T{post.id[-10:]}"
    media = post.media_type in ("IMAGE", "VIDEO")
    return {
        "id": post.id,
        "media_product_type": "THREADS",
        "media_type": post.media_type,
        "media_url": f"https://scontent.cdninstagram.com/sim/{post.id}.jpg" if media else None,
        "permalink": f"https://www.threads.net/@{username}/post/{shortcode}",
        "owner": {"id": post.user},
        "username": username,
        "text": post.text,
        "timestamp": meta_time(post.timestamp),
        "shortcode": shortcode,
        "thumbnail_url": None,
        "is_quote_post": post.is_quote_post,
        "is_reply": post.is_reply,
        "replied_to": {"id": post.replied_to} if post.replied_to else None,
        "root_post": {"id": post.root_post} if post.root_post else None,
    }


def _range(ctx: Ctx, floor: int) -> tuple[datetime | None, datetime | None]:
    since = parse_time(ctx.params.get("since"), "since")
    until = parse_time(ctx.params.get("until"), "until")
    if since is not None and since.timestamp() < floor:
        raise error_bodies.bad_param(
            f"Param since must be a unix timestamp greater than or equal to {floor}",
            kind=error_bodies.THREADS,
        )
    if since is not None and until is not None and since >= until:
        raise error_bodies.bad_param(
            "Param since must be earlier than until", kind=error_bodies.THREADS
        )
    return since, until


def _live_post(ctx: Ctx) -> ThreadsPost:
    """The post a media route names; a deleted one is gone, as any unknown object."""
    found = ctx.world.threads_post(ctx.object_id)
    if found.deleted_at is not None:
        raise error_bodies.object_not_found(found.id)
    return found


def threads(ctx: Ctx) -> dict[str, Any]:
    """GET /{threads-user-id}/threads: the user's posts, newest first; their replies are on
    /{threads-user-id}/replies and deleted posts on neither."""
    user = ctx.world.threads_user(ctx.object_id)
    if ctx.params.get("before") and ctx.params.get("after"):
        raise error_bodies.bad_param(
            "Only one of before or after may be given", kind=error_bodies.THREADS
        )
    since, until = _range(ctx, LIST_SINCE_FLOOR)
    fields = parse_fields(ctx.params.get("fields"), POST_FIELDS, "ThreadsMedia")
    limit = limit_param(ctx.params.get("limit"), default=25, maximum=100)
    posts = [
        p
        for p in ctx.world.posts_of(user.id)
        if (since is None or p.timestamp >= since)
        and (until is None or p.timestamp <= until)
        and not p.is_reply
        and p.deleted_at is None
    ]
    page = paginate(
        posts,
        lambda p: p.sort_key,
        limit=limit,
        after=ctx.params.get("after"),
        before=ctx.params.get("before"),
    )
    data = [pick(_post_values(p, user.username), fields) for p in page.items]
    return page_body(ctx.request, page, data, lambda p: p.sort_key)


def post(ctx: Ctx) -> dict[str, Any]:
    """GET /{threads-media-id}?fields=..."""
    found = _live_post(ctx)
    fields = parse_fields(ctx.params.get("fields"), POST_FIELDS, "ThreadsMedia")
    return pick(_post_values(found, ctx.world.threads_user(found.user).username), fields)


def user(ctx: Ctx) -> dict[str, Any]:
    """GET /{threads-user-id} and /me with a Threads token."""
    found = ctx.world.threads_user(ctx.target.object_id or ctx.owner or "")
    fields = parse_fields(ctx.params.get("fields"), USER_FIELDS, "ThreadsUser")
    values = {
        "id": found.id,
        "username": found.username,
        "name": found.username.title(),
        "threads_biography": "",
        "is_verified": False,
    }
    return pick(values, fields)


def _metrics(ctx: Ctx, allowed: tuple[str, ...]) -> list[str]:
    names = split_list(ctx.params.get("metric"))
    if not names:
        raise error_bodies.bad_param("The parameter metric is required", kind=error_bodies.THREADS)
    for index, name in enumerate(names):
        if name not in allowed:
            message = f"metric[{index}] must be one of the following values: {', '.join(allowed)}"
            raise error_bodies.bad_param(message, kind=error_bodies.THREADS)
    return names


def post_insights(ctx: Ctx) -> dict[str, Any]:
    """GET /{threads-media-id}/insights: lifetime counters of one post."""
    found = _live_post(ctx)
    names = _metrics(ctx, insights.POST_METRICS)
    if found.media_type == "REPOST_FACADE":
        return {"data": []}
    counts = found.counts(ctx.now())
    return {
        "data": [
            {
                "name": name,
                "period": "lifetime",
                "values": [{"value": counts[name]}],
                "title": TITLES[name],
                "description": f"Lifetime {name} of this post.",
                "id": f"{found.id}/insights/{name}/lifetime",
            }
            for name in names
        ]
    }


def user_insights(ctx: Ctx) -> dict[str, Any]:
    """GET /{threads-user-id}/threads_insights?metric=...&since=&until=&breakdown="""
    found = ctx.world.threads_user(ctx.object_id)
    names = _metrics(ctx, USER_METRICS)
    since, until = _range(ctx, INSIGHTS_SINCE_FLOOR)
    now = ctx.now()
    since = since or insights.pacific_day_start(now - timedelta(days=1))
    until = min(until or now, now)
    for name in NEEDS_INSTAGRAM:
        if name in names and found.ig_user_id is None:
            raise error_bodies.feature_not_available(name)
    breakdown = ctx.params.get("breakdown") or None
    if "follower_demographics" in names and breakdown not in insights.DEMOGRAPHICS:
        raise error_bodies.bad_param(
            "follower_demographics needs exactly one breakdown: country, city, age or gender",
            kind=error_bodies.THREADS,
        )
    days = insights.day_starts(since, until) if since < until else []
    data = [_user_item(found, name, days, breakdown) for name in names]
    return {"data": [item for item in data if item is not None]}


def _user_item(
    found: ThreadsUser, name: str, days: list[datetime], breakdown: str | None
) -> dict[str, Any] | None:
    item: dict[str, Any] = {"name": name, "period": "day"}  # TINS shows "day" throughout
    if name == "views":
        item["values"] = [
            {
                "value": insights.user_daily(found.seed, "views", day, found.daily_views),
                "end_time": meta_time(insights.pacific_day_start(day + timedelta(hours=26))),
            }
            for day in days
        ]
    elif name == "clicks":
        base = found.daily_views * DAILY_SHARE["clicks"]
        item["link_total_values"] = [
            {
                "value": sum(
                    insights.user_daily(found.seed, f"clicks:{url}", d, base) for d in days
                ),
                "link_url": url,
            }
            for url in found.links
        ]
    elif name == "followers_count":
        item["total_value"] = {"value": found.followers_count}
    elif name == "follower_demographics":
        if found.followers_count < 100 or breakdown is None:
            return None
        parts = insights.split(
            found.followers_count, found.seed, insights.DEMOGRAPHICS[breakdown], breakdown
        )
        results = [{"dimension_values": [label], "value": n} for label, n in parts]
        item["total_value"] = {"breakdowns": [{"dimension_keys": [breakdown], "results": results}]}
    else:
        base = found.daily_views * DAILY_SHARE[name]
        total = sum(insights.user_daily(found.seed, name, day, base) for day in days)
        item["total_value"] = {"value": total}
    item["title"] = TITLES[name]
    item["description"] = f"{TITLES[name]} of your profile."
    item["id"] = f"{found.id}/insights/{name}/day"
    return item


def refresh(ctx: Ctx) -> dict[str, Any]:
    """GET graph.threads.net/refresh_access_token?grant_type=th_refresh_token."""
    if ctx.token is None or ctx.token.kind != "threads":
        raise error_bodies.invalid_token()
    return refresh_grant(ctx)
