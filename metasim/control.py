"""The control API under /_sim: build and inspect the world over HTTP (JSON in, JSON out).

For users in another process (benchmarks, `archiver demo`); in-process tests call the
World's methods directly. Bodies name the World method's keyword arguments; times are
ISO-8601 strings or Unix seconds. Creation endpoints take one object or a list under the
plural key ({"accounts": [...]}) and answer the created objects, tokens included.
Errors: 400 (bad input), 404 (unknown object), 409 (id taken), as {"error": "..."}.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from metasim.api.instagram_account import set_account_insights
from metasim.world.state import Conflict, NotFound
from metasim.world.world import World

Endpoint = Callable[[World, dict[str, Any]], Any]
_TIME_KEYS = ("timestamp", "token_issued_at", "token_expires_at")


class BadInput(ValueError):
    """A control request the simulator cannot act on."""


def _moment(value: Any) -> Any:
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def _kwargs(method: Callable[..., Any], spec: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object as keyword arguments of `method`, times parsed; unknown keys refused."""
    if not isinstance(spec, dict):
        msg = "expected a JSON object"
        raise BadInput(msg)
    allowed = set(inspect.signature(method).parameters) - set(skip)
    unknown = set(spec) - allowed
    if unknown:
        msg = f"unknown field(s): {', '.join(sorted(unknown))}"
        raise BadInput(msg)
    kwargs = {key: _moment(value) if key in _TIME_KEYS else value for key, value in spec.items()}
    if kwargs.get("token_expires_at") is not None and not isinstance(
        kwargs["token_expires_at"], datetime
    ):
        kwargs["token_expires_at"] = datetime.fromtimestamp(kwargs["token_expires_at"], UTC)
    return kwargs


def _items(body: dict[str, Any], plural: str) -> list[Any]:
    items = body.get(plural, [body])
    if not isinstance(items, list):
        msg = f"{plural} must be a list"
        raise BadInput(msg)
    return items


def create_accounts(world: World, body: dict[str, Any]) -> Any:
    created = []
    for spec in _items(body, "accounts"):
        kwargs = _kwargs(world.add_account, spec)
        kwargs["stories"] = [
            _kwargs(world.add_story, story, skip=("account",)) for story in spec.get("stories", [])
        ]
        created.append(world.add_account(**kwargs))
    return {"accounts": [a.to_dict() for a in created]}


def populate(world: World, body: dict[str, Any]) -> Any:
    accounts = world.populate(**_kwargs(world.populate, body))
    return {"accounts": [a.to_dict() for a in accounts]}


def create_stories(world: World, body: dict[str, Any]) -> Any:
    stories = []
    for spec in _items(body, "stories"):
        stories.append(world.add_story(**_kwargs(world.add_story, spec)))
    return {"stories": [s.to_dict() for s in stories]}


def create_media(world: World, body: dict[str, Any]) -> Any:
    add = world.feed.add_media
    media = [add(**_kwargs(add, spec)) for spec in _items(body, "media")]
    return {"media": [m.to_dict() for m in media]}


def media_values(world: World, query: dict[str, Any]) -> Any:
    media_id = str(query["media_id"])
    return {**world.feed.post(media_id).to_dict(), "values": world.feed.values(media_id)}


def refuse_metrics(world: World, body: dict[str, Any]) -> Any:
    return world.refuse_metrics(**_kwargs(world.refuse_metrics, body)).to_dict()


def create_threads_users(world: World, body: dict[str, Any]) -> Any:
    users = [
        world.add_threads_user(**_kwargs(world.add_threads_user, spec))
        for spec in _items(body, "users")
    ]
    return {"users": [u.to_dict() for u in users]}


def create_threads_posts(world: World, body: dict[str, Any]) -> Any:
    posts = [
        world.add_threads_post(**_kwargs(world.add_threads_post, spec))
        for spec in _items(body, "posts")
    ]
    return {"posts": [p.to_dict() for p in posts]}


def link(world: World, body: dict[str, Any]) -> Any:
    world.link(**_kwargs(world.link, body))
    return {"ok": True}


def add_faults(world: World, body: dict[str, Any]) -> Any:
    faults = [
        world.faults.add(**_kwargs(world.faults.add, spec)) for spec in _items(body, "faults")
    ]
    return {"faults": [f.to_dict() for f in faults]}


def list_faults(world: World, body: dict[str, Any]) -> Any:
    return {"faults": [f.to_dict() for f in world.faults.live()]}


def clear_faults(world: World, body: dict[str, Any]) -> Any:
    world.faults.clear()
    return {"ok": True}


def expire_token(world: World, body: dict[str, Any]) -> Any:
    return world.tokens.expire_token(**_kwargs(world.tokens.expire_token, body)).to_dict()


def age_token(world: World, body: dict[str, Any]) -> Any:
    return world.tokens.age_token(**_kwargs(world.tokens.age_token, body)).to_dict()


def set_budget(world: World, body: dict[str, Any]) -> Any:
    world.budgets.set_budget(**_kwargs(world.budgets.set_budget, body))
    return {"ok": True}


def add_block(world: World, body: dict[str, Any]) -> Any:
    world.budgets.block(**_kwargs(world.budgets.block, body))
    return {"blocks": world.budgets.blocks()}


def list_blocks(world: World, body: dict[str, Any]) -> Any:
    return {"blocks": world.budgets.blocks()}


def clear_blocks(world: World, body: dict[str, Any]) -> Any:
    world.budgets.clear_blocks()
    return {"ok": True}


def deny(world: World, body: dict[str, Any]) -> Any:
    return world.budgets.deny(**_kwargs(world.budgets.deny, body)).to_dict()


def allow(world: World, body: dict[str, Any]) -> Any:
    return {"removed": world.budgets.allow(**_kwargs(world.budgets.allow, body))}


def configure(world: World, body: dict[str, Any]) -> Any:
    return world.configure(**body).to_dict()


def clock(world: World, body: dict[str, Any]) -> Any:
    world.advance(float(body.get("advance_seconds", 0.0)))
    return {"now": world.now().isoformat(), "offset_seconds": world.state.offset}


def reset(world: World, body: dict[str, Any]) -> Any:
    world.reset(config=bool(body.get("config", False)))
    return {"ok": True}


def calls(world: World, query: dict[str, Any]) -> Any:
    since = int(query.get("since", 0))
    found = world.log.calls(
        kind=query.get("kind"),
        account=query.get("account"),
        platform=query.get("platform"),
        since=since,
    )
    return {"calls": [c.to_dict() for c in found], "last": world.log.last_seq()}


def clear_calls(world: World, query: dict[str, Any]) -> Any:
    world.log.clear()
    return {"ok": True}


def state(world: World, query: dict[str, Any]) -> Any:
    return {
        "ok": True,
        "now": world.now().isoformat(),
        "summary": world.summary(),
        "config": world.config.to_dict(),
    }


def story_values(world: World, query: dict[str, Any]) -> Any:
    media_id = str(query["media_id"])
    story = world.story(media_id)
    return {
        **story.to_dict(),
        "values": world.story_values(media_id),
        "webhook_value": world.story_webhook_value(media_id),
    }


def _endpoint(world: World, action: Endpoint) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        if request.method == "POST":
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return JSONResponse({"error": "body is not JSON"}, 400)
        else:
            body = {**request.query_params, **request.path_params}
        try:
            return JSONResponse(action(world, body))
        except NotFound as exc:
            return JSONResponse({"error": str(exc)}, 404)
        except Conflict as exc:
            return JSONResponse({"error": str(exc)}, 409)
        except (BadInput, ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, 400)

    return endpoint


def routes(world: World) -> list[Route]:
    """The /_sim routes (mounted by metasim.app.create_app)."""
    table: list[tuple[str, Endpoint, list[str]]] = [
        ("/health", state, ["GET"]),
        ("/state", state, ["GET"]),
        ("/config", configure, ["POST"]),
        ("/clock", clock, ["POST"]),
        ("/reset", reset, ["POST"]),
        ("/accounts", create_accounts, ["POST"]),
        ("/accounts/insights", set_account_insights, ["POST"]),
        ("/populate", populate, ["POST"]),
        ("/stories", create_stories, ["POST"]),
        ("/stories/refuses", refuse_metrics, ["POST"]),
        ("/stories/{media_id}", story_values, ["GET"]),
        ("/media", create_media, ["POST"]),
        ("/media/{media_id}", media_values, ["GET"]),
        ("/threads/users", create_threads_users, ["POST"]),
        ("/threads/posts", create_threads_posts, ["POST"]),
        ("/links", link, ["POST"]),
        ("/budget", set_budget, ["POST"]),
        ("/blocks", add_block, ["POST"]),
        ("/blocks", list_blocks, ["GET"]),
        ("/blocks", clear_blocks, ["DELETE"]),
        ("/permissions", deny, ["POST"]),
        ("/permissions", allow, ["DELETE"]),
        ("/tokens/expire", expire_token, ["POST"]),
        ("/tokens/age", age_token, ["POST"]),
        ("/calls", calls, ["GET"]),
        ("/calls", clear_calls, ["DELETE"]),
        ("/faults", add_faults, ["POST"]),
        ("/faults", list_faults, ["GET"]),
        ("/faults", clear_faults, ["DELETE"]),
    ]
    return [
        Route(path, _endpoint(world, action), methods=methods) for path, action, methods in table
    ]
