"""What a Meta route handler gets (Ctx), and the parameter parsing the routes share."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from metasim.api import error_bodies
from metasim.world.entities import Token
from metasim.world.limits import Charge
from metasim.world.world import World

Handler = Callable[["Ctx"], dict[str, Any]]


@dataclass
class Target:
    """What a path names: the route kind (for faults and the call log) and its handler.

    `owner` is the IG account or Threads user whose token the call needs (None: the token
    decides, as for /me and /refresh_access_token); `error` is raised once the token passed.
    """

    kind: str
    platform: str | None
    handler: Handler | None = None
    object_id: str | None = None
    owner: str | None = None
    error: error_bodies.MetaApiError | None = None


@dataclass
class Ctx:
    """One request being answered."""

    world: World
    request: Request
    params: dict[str, str]
    target: Target
    version: str | None = None
    host: str | None = None
    token: Token | None = None
    owner: str | None = None
    fault: int | None = None
    buc: Charge | None = None
    app: Charge | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def object_id(self) -> str:
        return self.target.object_id or ""

    def now(self) -> datetime:
        return self.world.now()


def meta_time(moment: datetime) -> str:
    """Meta's timestamp format: 2019-04-05T07:56:32+0000."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def split_list(value: str | None) -> list[str]:
    """`a, b,,a` -> ["a", "b"]: names in order, once each."""
    names = [part.strip() for part in (value or "").split(",")]
    return list(dict.fromkeys(name for name in names if name))


def parse_fields(value: str | None, allowed: Collection[str], node_type: str) -> list[str]:
    """The `fields` parameter (default just `id`); an unknown field is Meta's (#100) error."""
    names = split_list(value) or ["id"]
    for name in names:
        if name not in allowed:
            raise error_bodies.nonexisting_field(name, node_type)
    return names


def pick(values: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The requested fields that have a value (Meta omits absent ones)."""
    return {name: values[name] for name in names if values.get(name) is not None}


def parse_time(
    value: str | None, name: str, *, kind: str = error_bodies.THREADS
) -> datetime | None:
    """A Unix timestamp or an ISO-8601 date/time (a subset of the strtotime Meta accepts)."""
    if value is None or value == "":
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise error_bodies.bad_param(f"Param {name} must be a unix timestamp", kind=kind) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
