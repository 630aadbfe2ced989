"""API versions in the path, as strict as Meta (or stricter, where Meta leans on app settings).

Graph hosts (graph.facebook.com, graph.instagram.com): the versions available on the
changelog's table (https://developers.facebook.com/docs/graph-api/changelog) are served as
asked. A version that has ended is served as the oldest available one, as Meta does ("once a
version is no longer usable, any calls made to it will be defaulted to the next oldest usable
version", https://developers.facebook.com/docs/graph-api/guides/versioning), and the answer's
facebook-api-version header says so. A version that never existed is read by Meta as an
object id, so what follows it is "Unknown path components" (code 2500; public reports of
calls with a mistyped version). Threads has v1.0 only
(https://developers.facebook.com/docs/threads/overview); another version there gets the same
2500 answer [UNCERTAIN: Meta's Threads answer is not documented].

Unversioned calls: Meta serves them at the version set in the app's dashboard (same
versioning page). The simulator refuses them (400, code 2500) [UNCERTAIN wording], so a
client that forgets to pin its version fails a test instead of depending on a dashboard
setting. Token endpoints that Meta documents without a version stay allowed bare.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from metasim.api import error_bodies

GRAPH_VERSIONS: Final = ("v22.0", "v23.0", "v24.0", "v25.0", "v26.0")
THREADS_VERSIONS: Final = ("v1.0",)
# Every Graph version before v22.0: v2.0-v2.12, v3.0-v3.3, v4.0-v21.0.
ENDED: Final = frozenset(
    [f"v2.{m}" for m in range(13)] + [f"v3.{m}" for m in range(4)]
    + [f"v{n}.0" for n in range(4, 22)]
)  # fmt: skip
UNVERSIONED_OK: Final = frozenset({"refresh_access_token", "access_token", "debug_token"})
_VERSION: Final = re.compile(r"^v\d+\.\d+$")


def is_version(segment: str) -> bool:
    return bool(_VERSION.match(segment))


def served_version(host: str | None, version: str) -> str | None:
    """The version Meta answers a call to `version` with on `host`, None if none."""
    threads = version in THREADS_VERSIONS and host in (None, "threads")
    graph = host != "threads"
    if threads or (graph and version in GRAPH_VERSIONS):
        return version
    if graph and version in ENDED:
        return GRAPH_VERSIONS[0]
    return None


class Versioned(NamedTuple):
    """A path's version as asked and as served, what follows it, and the error if any."""

    asked: str | None
    served: str | None
    rest: list[str]
    error: error_bodies.MetaApiError | None = None


def check(host: str | None, segments: list[str]) -> Versioned:
    """The version of a path (segments after the host); the error waits for the token."""
    if segments and segments[0] in UNVERSIONED_OK:
        return Versioned(None, None, segments)
    if not segments or not is_version(segments[0]):
        return Versioned(None, None, segments, error_bodies.unversioned_call())
    asked, rest = segments[0], segments[1:]
    served = served_version(host, asked)
    if served is None:
        error = error_bodies.unknown_path(rest) if rest else error_bodies.object_not_found(asked)
        return Versioned(asked, None, rest, error)
    return Versioned(asked, served, rest)
