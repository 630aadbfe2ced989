"""Feed posts and Reels: the /{ig-user-id}/media edge, the media object and its insights.

The edge (https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/media)
lists feed media and Reels, not stories, newest first, cursor-paginated, at most the 10K most
recent. Insights follow Meta's media insights reference (https://developers.facebook.com/docs/instagram-platform/reference/instagram-media/insights):
- a deprecated metric (impressions, plays, clips_replays_count, video_views, ...) is a (#100)
  naming it; a metric of another product type (a story's `navigation`, a Reel's watch time
  asked of a feed post, `follows` of a Reel) is "(#100) The Media Insights API does not
  support the ... metric for this media product type"; an unknown name is "metric[i] must be
  one of ...";
- `breakdown=action_type` only with `profile_activity` (FEED): mixed with any other metric it
  is "An unknown error has occurred." (code 1, HTTP 500), as the reference warns;
- a metric the media refuses (`IgPost.refuses`, e.g. a carousel [UNCERTAIN which]) fails the
  whole call with (#100) "... is not supported for this media type", naming the first one.
"""

from __future__ import annotations

from typing import Any, Final

from metasim.api import error_bodies
from metasim.api.instagram import DEPRECATED, MEDIA_FIELDS, NOT_FOR_MEDIA
from metasim.api.paging import limit_param, page_body, paginate
from metasim.api.request import Ctx, meta_time, parse_fields, pick, split_list
from metasim.world.entities import IgPost
from metasim.world.feed import METRICS, REELS
from metasim.world.insights import PROFILE_ACTIONS, STORY_METRICS

KNOWN: Final = tuple(sorted({*STORY_METRICS, *(m for ms in METRICS.values() for m in ms)}))
BREAKDOWN: Final = "action_type"  # the only media breakdown outside stories
TITLES: Final = {
    "comments": "Comments",
    "follows": "Follows",
    "likes": "Likes",
    "profile_activity": "Profile activity",
    "profile_visits": "Profile visits",
    "reach": "Accounts reached",
    "saved": "Saved",
    "shares": "Shares",
    "total_interactions": "Interactions",
    "views": "Views",
    "ig_reels_avg_watch_time": "Average watch time",
    "ig_reels_video_view_total_time": "Total watch time",
}


def _values(post: IgPost, username: str) -> dict[str, Any]:
    video = post.media_type == "VIDEO"
    cdn = f"https://scontent.cdninstagram.com/sim/{post.id}"
    code = f"C{post.id[-10:]}"
    path = "reel" if post.product_type == REELS else "p"
    return {
        "id": post.id,
        "media_type": post.media_type,
        "media_product_type": post.product_type,
        "permalink": f"https://www.instagram.com/{path}/{code}/",
        "timestamp": meta_time(post.timestamp),
        "caption": post.caption,
        "username": username,
        "media_url": f"{cdn}.mp4" if video else f"{cdn}.jpg",
        "thumbnail_url": f"{cdn}_t.jpg" if video else None,
        "shortcode": code,
        "owner": {"id": post.account},
        "is_shared_to_feed": True if post.product_type == REELS else None,
    }


def media_edge(ctx: Ctx) -> dict[str, Any]:
    """GET /{ig-user-id}/media: feed posts and Reels, newest first, cursor-paginated."""
    world, account = ctx.world, ctx.world.account(ctx.object_id)
    fields = parse_fields(ctx.params.get("fields"), MEDIA_FIELDS, "IGMedia")
    limit = limit_param(ctx.params.get("limit"), default=world.config.page_size)
    page = paginate(
        world.feed.media_of(account.ig_user_id),
        lambda p: p.sort_key,
        limit=limit,
        after=ctx.params.get("after"),
        before=ctx.params.get("before"),
    )
    data = [pick(_values(p, account.username), fields) for p in page.items]
    return page_body(ctx.request, page, data, lambda p: p.sort_key)


def post(ctx: Ctx) -> dict[str, Any]:
    """GET /{ig-media-id}?fields=... of a feed post or Reel."""
    found = ctx.world.feed.post(ctx.object_id)
    fields = parse_fields(ctx.params.get("fields"), MEDIA_FIELDS, "IGMedia")
    return pick(_values(found, ctx.world.account(found.account).username), fields)


def _check(post: IgPost, names: list[str], breakdown: str | None) -> None:
    if not names:
        raise error_bodies.bad_param("The parameter metric is required")
    served = METRICS[post.product_type]
    for index, name in enumerate(names):
        if name in DEPRECATED:
            raise error_bodies.deprecated_metric(name)
        if name not in KNOWN:
            raise error_bodies.invalid_metric(index, KNOWN)
        if name not in served:
            raise error_bodies.unsupported_metric(name)
    if breakdown is None:
        return
    if breakdown not in (BREAKDOWN, "story_navigation_action_type"):
        allowed = f"{BREAKDOWN}, story_navigation_action_type"
        raise error_bodies.bad_param(f"breakdown[0] must be one of the following values: {allowed}")
    if breakdown != BREAKDOWN or any(name != "profile_activity" for name in names):
        raise error_bodies.unknown_error()


def insights(ctx: Ctx) -> dict[str, Any]:
    """GET /{ig-media-id}/insights?metric=...&breakdown=... of a feed post or Reel."""
    found = ctx.world.feed.post(ctx.object_id)
    names = split_list(ctx.params.get("metric"))
    breakdown = ctx.params.get("breakdown") or None
    _check(found, names, breakdown)
    refused = [name for name in names if name in found.refuses]
    if refused:
        raise error_bodies.api_error(400, 100, NOT_FOR_MEDIA.format(metric=refused[0]))
    counts = found.counts(ctx.now())
    return {"data": [_item(found.id, name, counts, breakdown) for name in names]}


def _item(media_id: str, name: str, counts: dict[str, int], breakdown: str | None) -> Any:
    value = counts[name]
    total: dict[str, Any] = {"value": value}
    if breakdown is not None:
        results = [
            {"dimension_values": [action], "value": counts[f"pa:{action}"]}
            for action in PROFILE_ACTIONS
            if counts[f"pa:{action}"] > 0
        ]
        total["breakdowns"] = [{"dimension_keys": [breakdown], "results": results}]
    return {
        "name": name,
        "period": "lifetime",
        "values": [{"value": value}],
        "title": TITLES[name],
        "total_value": total,
        "id": f"{media_id}/insights/{name}/lifetime",
    }
