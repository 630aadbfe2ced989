"""From a request path to a Target: which object, which edge, which handler.

Paths look like Meta's: `[/{host}]/{version}/{object-id}[/{edge}]`, plus `/{version}/me`,
`/refresh_access_token` and `/debug_token` (metasim.api.versions says which versions each host
serves, and which paths need none). The optional first segment `facebook`, `instagram` or
`threads` lets one simulator stand for the three hosts (set e.g.
FACEBOOK_GRAPH_URL=http://127.0.0.1:PORT/facebook): the call log tells them apart and a token
must match its host. Without it all hosts look alike. The kind of object an id names (IG
account, story, feed post or Reel, Threads user or post) picks the routes."""

from __future__ import annotations

from typing import Final

from metasim.api import (
    error_bodies,
    instagram,
    instagram_account,
    instagram_media,
    threads,
    versions,
)
from metasim.api.request import Handler, Target
from metasim.api.versions import Versioned
from metasim.world.entities import Account, IgPost, Story, ThreadsPost, ThreadsUser
from metasim.world.world import World

HOSTS: Final = ("facebook", "instagram", "threads")

# object class -> (node type, platform, {edge or None: (route kind, handler)})
ROUTES: Final[dict[type, tuple[str, str, dict[str | None, tuple[str, Handler]]]]] = {
    Account: ("IGUser", "instagram", {
        None: ("account", instagram.account),
        "stories": ("stories", instagram.stories),
        "media": ("ig_media_list", instagram_media.media_edge),
        "connected_threads_user": ("connected_threads_user", instagram.connected_threads_user),
        "insights": ("account_insights", instagram_account.insights_of_account),
    }),
    Story: ("IGMedia", "instagram", {
        None: ("media", instagram.media),
        "insights": ("insights", instagram.insights),
    }),
    IgPost: ("IGMedia", "instagram", {
        None: ("ig_media", instagram_media.post),
        "insights": ("ig_media_insights", instagram_media.insights),
    }),
    ThreadsUser: ("ThreadsUser", "threads", {
        None: ("threads_user", threads.user),
        "threads": ("threads", threads.threads),
        "threads_insights": ("threads_insights", threads.user_insights),
    }),
    ThreadsPost: ("ThreadsMedia", "threads", {
        None: ("threads_media", threads.post),
        "insights": ("threads_media_insights", threads.post_insights),
    }),
}  # fmt: skip
REFRESH_GRANTS: Final[dict[str, tuple[str, Handler]]] = {
    "ig_refresh_token": ("instagram", instagram.refresh),
    "th_refresh_token": ("threads", threads.refresh),
}


def split_path(path: str) -> tuple[str | None, list[str]]:
    """(host prefix, remaining segments)."""
    segments = [part for part in path.split("/") if part]
    host = segments.pop(0) if segments and segments[0] in HOSTS else None
    return host, segments


def route(world: World, path: str, grant_type: str | None) -> tuple[str | None, Versioned, Target]:
    """(host, version, target) of a request path; a version error waits in the target."""
    host, segments = split_path(path)
    version = versions.check(host, segments)
    if version.error is not None:
        return host, version, Target("unknown", None, error=version.error)
    return host, version, resolve(world, version.rest, grant_type)


def _owner(found: Account | Story | IgPost | ThreadsUser | ThreadsPost) -> str:
    if isinstance(found, Account):
        return found.ig_user_id
    if isinstance(found, Story | IgPost):
        return found.account
    if isinstance(found, ThreadsPost):
        return found.user
    return found.id


def resolve(world: World, segments: list[str], grant_type: str | None) -> Target:
    """The target of a path; errors (unknown object or edge) wait in `target.error`."""
    if segments == ["refresh_access_token"]:
        platform, handler = REFRESH_GRANTS.get(grant_type or "", (None, None))
        if handler is None:
            return Target("refresh", platform, error=error_bodies.bad_grant(grant_type))
        return Target("refresh", platform, handler)
    if segments == ["me"]:
        return Target("me", None)
    if segments == ["debug_token"]:
        return Target("debug_token", "instagram", instagram.debug_token)
    if not segments or len(segments) > 2:
        return Target("unknown", None, error=error_bodies.unknown_path(segments))
    object_id, edge = segments[0], (segments[1] if len(segments) > 1 else None)
    found = world.state.lookup(object_id)
    if found is None:
        return Target(
            "unknown", None, object_id=object_id, error=error_bodies.object_not_found(object_id)
        )
    node_type, platform, edges = ROUTES[type(found)]
    owner = _owner(found)
    if edge not in edges:
        error = error_bodies.nonexisting_field(edge or "", node_type)
        return Target("unknown", platform, object_id=object_id, owner=owner, error=error)
    kind, handler = edges[edge]
    return Target(kind, platform, handler, object_id, owner)
