"""Instagram Graph API routes (graph.facebook.com and graph.instagram.com look alike here).

Rules from Meta's media insights reference (MINS, https://developers.facebook.com/documentation/instagram-platform/reference/instagram-media/insights):
- /stories lists only unexpired stories (24 h after `timestamp`), newest first, paginated.
- Insights of a story: deprecated metrics and metrics of other media types are (#100)
  errors naming only that metric; unknown names get "metric[i] must be one of ..."; a
  breakdown asked with a metric that does not support it is "An unknown error has occurred."
  (code 1, HTTP 500); a metric the story refuses (`Story.refuses`) fails the whole call with
  (#100) "The metric ... is not supported for this media type", naming the first one; fewer
  than 5 viewers is (#10); an expired story has `{"data": []}`.
- Breakdown values are lowercase (`tap_forward`, `bio_link_clicked`); profile_activity omits
  zero actions, as public samples do [UNCERTAIN]; navigation lists all four.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from metasim.api import error_bodies
from metasim.api.paging import limit_param, page_body, paginate
from metasim.api.request import Ctx, meta_time, parse_fields, pick, split_list
from metasim.world.entities import Story
from metasim.world.insights import NAVIGATION, PROFILE_ACTIONS, STORY_METRICS

MEDIA_FIELDS: Final = frozenset(
    {"id", "media_type", "media_product_type", "permalink", "timestamp", "caption",
     "username", "media_url", "thumbnail_url", "shortcode", "owner", "is_shared_to_feed"}
)  # fmt: skip
USER_FIELDS: Final = frozenset({"id", "user_id", "username", "name", "account_type"})
BREAKDOWNS: Final = {
    "navigation": "story_navigation_action_type",
    "profile_activity": "action_type",
}
DEPRECATED: Final = frozenset(
    {"impressions", "taps_forward", "taps_back", "exits", "plays", "video_views", "engagement",
     "clips_replays_count", "ig_reels_aggregated_all_plays_count",
     "carousel_album_impressions", "carousel_album_reach", "carousel_album_engagement"}
)  # fmt: skip
OTHER_MEDIA: Final = frozenset(
    {"likes", "comments", "saved", "ig_reels_avg_watch_time", "ig_reels_video_view_total_time",
     "crossposted_views", "profile_links_taps"}
)  # fmt: skip
# Meta's words when a metric valid for the version is not served for this media
# (https://github.com/exileum/meta-mcp/issues/120).
NOT_FOR_MEDIA: Final = "(#100) The metric {metric} is not supported for this media type"
# Meta's words when /debug_token is called with a token that may not inspect others
# (https://developers.facebook.com/docs/graph-api/reference/debug_token).
NOT_ALLOWED: Final = (
    "(#100) You must provide an app access token, or a user access token that is an owner "
    "or developer of the app"
)
TITLES: Final = {
    "views": ("Views", "The number of times your story was played or displayed."),
    "reach": ("Accounts reached", "The number of unique accounts that saw your story."),
    "replies": ("Replies", "The number of replies to your story."),
    "shares": ("Shares", "The number of times your story was shared."),
    "total_interactions": ("Interactions", "Replies, shares and reposts of your story."),
    "follows": ("Follows", "The number of accounts that followed you from this story."),
    "profile_visits": ("Profile visits", "The number of times your profile was visited."),
    "link_clicks": ("Link clicks", "The number of taps on the link sticker of your story."),
    "reposts": ("Reposts", "The number of times your story was reposted."),
    "total_views": ("Total views", "Views of your story on Instagram and Facebook."),
    "navigation": ("Navigation", "Forward and back taps, exits and swipes on your story."),
    "profile_activity": ("Profile activity", "Actions taken on your profile from this story."),
}


def _story_values(story: Story, username: str) -> dict[str, Any]:
    video = story.media_type == "VIDEO"
    cdn = f"https://scontent.cdninstagram.com/sim/{story.id}"
    return {
        "id": story.id,
        "media_type": story.media_type,
        "media_product_type": "STORY",
        "permalink": f"https://www.instagram.com/stories/{username}/{story.id}/",
        "timestamp": meta_time(story.timestamp),
        "caption": story.caption,
        "username": username,
        "media_url": f"{cdn}.mp4" if video else f"{cdn}.jpg",
        "thumbnail_url": f"{cdn}_t.jpg" if video else None,
        "shortcode": f"S{story.id[-10:]}",
        "owner": {"id": story.account},
        "is_shared_to_feed": False,
    }


def stories(ctx: Ctx) -> dict[str, Any]:
    """GET /{ig-user-id}/stories: live stories only, cursor-paginated."""
    world, account = ctx.world, ctx.world.account(ctx.object_id)
    fields = parse_fields(ctx.params.get("fields"), MEDIA_FIELDS, "IGMedia")
    limit = limit_param(ctx.params.get("limit"), default=world.config.page_size)
    page = paginate(
        world.live_stories(account.ig_user_id),
        lambda s: s.sort_key,
        limit=limit,
        after=ctx.params.get("after"),
        before=ctx.params.get("before"),
    )
    data = [pick(_story_values(s, account.username), fields) for s in page.items]
    return page_body(ctx.request, page, data, lambda s: s.sort_key)


def media(ctx: Ctx) -> dict[str, Any]:
    """GET /{ig-media-id}?fields=... (also after expiry: the object itself remains)."""
    story = ctx.world.story(ctx.object_id)
    fields = parse_fields(ctx.params.get("fields"), MEDIA_FIELDS, "IGMedia")
    return pick(_story_values(story, ctx.world.account(story.account).username), fields)


def account(ctx: Ctx) -> dict[str, Any]:
    """GET /{ig-user-id}?fields=id,username,..."""
    found = ctx.world.account(ctx.object_id)
    fields = parse_fields(ctx.params.get("fields"), USER_FIELDS, "IGUser")
    return pick(_user_values(found.ig_user_id, found.username), fields)


def _user_values(ig_user_id: str, username: str) -> dict[str, Any]:
    return {
        "id": ig_user_id,
        "user_id": ig_user_id,
        "username": username,
        "name": username.replace("_", " ").title(),
        "account_type": "BUSINESS",
    }


def me(ctx: Ctx) -> dict[str, Any]:
    """GET /me with an IG token. With IG Login `id` is app-scoped and `user_id` is the
    professional account id that webhooks carry (https://developers.facebook.com/docs/graph-api/webhooks/getting-started)."""
    found = ctx.world.account(ctx.owner or "")
    fields = parse_fields(ctx.params.get("fields"), USER_FIELDS, "IGUser")
    values = _user_values(found.ig_user_id, found.username)
    if found.login == "instagram":
        values["id"] = f"9{found.ig_user_id[-15:]}"
    return pick(values, fields)


def connected_threads_user(ctx: Ctx) -> dict[str, Any]:
    """GET /{ig-user-id}/connected_threads_user: the linked Threads user, or no data."""
    linked = ctx.world.connected_threads_user(ctx.object_id)
    return {"data": [{"threads_user_id": linked}] if linked else []}


def _check_metrics(names: list[str], breakdown: str | None) -> None:
    if not names:
        raise error_bodies.bad_param("The parameter metric is required")
    for index, name in enumerate(names):
        if name in DEPRECATED:
            raise error_bodies.deprecated_metric(name)
        if name in OTHER_MEDIA:
            raise error_bodies.unsupported_metric(name)
        if name not in STORY_METRICS:
            raise error_bodies.invalid_metric(index, STORY_METRICS)
    if breakdown is None:
        return
    if breakdown not in BREAKDOWNS.values():
        allowed = ", ".join(sorted(BREAKDOWNS.values()))
        raise error_bodies.bad_param(f"breakdown[0] must be one of the following values: {allowed}")
    if any(BREAKDOWNS.get(name) != breakdown for name in names):
        raise error_bodies.unknown_error()


def insights(ctx: Ctx) -> dict[str, Any]:
    """GET /{ig-media-id}/insights?metric=...&breakdown=..."""
    story = ctx.world.story(ctx.object_id)
    names = split_list(ctx.params.get("metric"))
    breakdown = ctx.params.get("breakdown") or None
    _check_metrics(names, breakdown)
    refused = [name for name in names if name in story.refuses]
    if refused:  # the whole call fails, naming one metric (a client retries without it)
        raise error_bodies.api_error(400, 100, NOT_FOR_MEDIA.format(metric=refused[0]))
    if "facebook_views" in names:  # MINS: throws unless the story was shared to Facebook
        raise error_bodies.api_error(
            400, 100, "(#100) The facebook_views metric is unavailable: not shared to Facebook"
        )
    now = ctx.now()
    if not story.alive(now):
        if ctx.world.config.expired_insights == "error":
            raise error_bodies.object_not_found(story.id)
        return {"data": []}
    if story.viewers < 5:
        raise error_bodies.not_enough_viewers()
    counts = story.counts(now)
    return {"data": [_item(story.id, name, counts, breakdown) for name in names]}


def _item(media_id: str, name: str, counts: dict[str, int], breakdown: str | None) -> Any:
    value = counts[name]
    title, description = TITLES[name]
    total: dict[str, Any] = {"value": value}
    if breakdown is not None:
        prefix, actions = ("nav", NAVIGATION) if name == "navigation" else ("pa", PROFILE_ACTIONS)
        results = [
            {"dimension_values": [action], "value": counts[f"{prefix}:{action}"]}
            for action in actions
            if name == "navigation" or counts[f"{prefix}:{action}"] > 0
        ]
        total["breakdowns"] = [{"dimension_keys": [breakdown], "results": results}]
    return {
        "name": name,
        "period": "lifetime",
        "values": [{"value": value}],
        "title": title,
        "description": description,
        "total_value": total,
        "id": f"{media_id}/insights/{name}/lifetime",
    }


def refresh(ctx: Ctx) -> dict[str, Any]:
    """GET graph.instagram.com/refresh_access_token?grant_type=ig_refresh_token: IG Login
    tokens only, at least 24 h old and unexpired (the pipeline checked expiry)."""
    token = ctx.token
    if token is None or token.kind != "instagram":
        raise error_bodies.invalid_token()
    return refresh_grant(ctx)


def refresh_grant(ctx: Ctx) -> dict[str, Any]:
    """The refreshed token's answer, for both hosts: {access_token, token_type, expires_in}."""
    token = ctx.token
    assert token is not None
    if ctx.now() - token.issued_at < timedelta(hours=24):
        raise error_bodies.token_too_young()
    new = ctx.world.tokens.refresh_token(token)
    expires_in = round((new.expires_at - new.issued_at).total_seconds()) if new.expires_at else 0
    return {"access_token": new.value, "token_type": "bearer", "expires_in": expires_in}


def debug_token(ctx: Ctx) -> dict[str, Any]:
    """GET /debug_token?input_token=...: what Meta knows of a token, for the app or a
    developer of it only (metasim.world.tokens)."""
    assert ctx.token is not None  # the pipeline checked it
    if not ctx.world.tokens.may_debug(ctx.token):
        raise error_bodies.api_error(400, 100, NOT_ALLOWED)
    value = ctx.params.get("input_token")
    if not value:
        raise error_bodies.api_error(400, 100, "(#100) The parameter input_token is required")
    return {"data": ctx.world.tokens.debug_token_data(value)}
