"""The simulator's ASGI app: Meta's routes behind one pipeline, and the /_sim control API.

Each Meta call goes: injected fault (delay, error or a garbage 200) -> token (104 missing,
190/467 unknown, 190 "Cannot parse access token" for a token of the other login type on this
host, 190/463 expired) -> path: API version (metasim.versions) and object (100/33) -> app
budget or block (code 4) -> account budget or block (80002, Instagram only) -> permission
denied on demand (10, 200-299) -> handler. Every answer, errors included, carries X-App-Usage (in
graph.instagram.com's own shape on that host) and, on Instagram routes,
X-Business-Use-Case-Usage for the account; every answer is written to the call log with the
token replaced by `***`.

Threads answers carry X-App-Usage (the Threads app's own count) and no BUC header: whether
Threads sends usage headers is undocumented [UNCERTAIN]
(https://developers.facebook.com/docs/threads/overview says nothing of them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from metasim import control, errors, graph, threads, tokens
from metasim.context import Ctx, Target
from metasim.entities import Token
from metasim.faults import GARBAGE, Fault
from metasim.limits import Charge
from metasim.routing import route
from metasim.state import World

log = logging.getLogger(__name__)
API_VERSION_HEADER = "facebook-api-version"


def create_app(world: World) -> Starlette:
    """The simulator serving `world`: Meta's hosts at `/`, the control API at `/_sim`."""

    async def meta(request: Request) -> Response:
        return await answer(world, request)

    return Starlette(
        routes=[
            Mount("/_sim", routes=control.routes(world)),
            Route("/{path:path}", meta, methods=["GET", "POST", "DELETE"]),
        ]
    )


async def answer(world: World, request: Request) -> Response:
    """Run one Meta call through the pipeline and log it."""
    started, at = time.perf_counter(), world.now()
    params = dict(request.query_params)
    host, version, target = route(world, request.url.path, params.get("grant_type"))
    ctx = Ctx(world, request, params, target, version=version.served, host=host)
    ctx.owner = target.owner
    try:
        if request.method != "GET":
            raise errors.api_error(400, 100, f"Unsupported {request.method.lower()} request.")
        result = await _run(ctx)
        response = result if isinstance(result, Response) else JSONResponse(result)
        code = None
    except errors.MetaApiError as exc:
        response = _error_response(exc)
        code = exc.code
    response.headers.update(_usage_headers(ctx))
    response.headers["x-fb-trace-id"] = errors.fbtrace_id()
    if version.served:
        response.headers[API_VERSION_HEADER] = version.served
    shown = {k: ("***" if k == "access_token" else v) for k, v in params.items()}
    world.log.record(
        at=at,
        method=request.method,
        path=request.url.path,
        params=shown,
        kind=ctx.target.kind,
        status=response.status_code,
        host=host,
        version=version.asked,
        platform=ctx.target.platform,
        account=ctx.owner,
        object_id=target.object_id,
        code=code,
        fault=ctx.fault,
        token_serial=ctx.token.serial if ctx.token else None,
        duration_ms=(time.perf_counter() - started) * 1000,
    )
    return response


def _error_response(exc: errors.MetaApiError) -> Response:
    if isinstance(exc.body, str):
        return PlainTextResponse(exc.body, exc.status, headers=exc.headers, media_type="text/html")
    return JSONResponse(exc.body, exc.status, headers=exc.headers)


async def _run(ctx: Ctx) -> dict[str, Any] | Response:
    fault = ctx.world.take_fault(ctx.target.owner, ctx.target.kind)
    if fault is not None:
        ctx.fault = fault.id
        injected = await _inject(ctx, fault)
        if injected is not None:
            return injected
    _check_token(ctx)
    target = ctx.target  # /me is only known once the token says whose it is
    if target.error is not None:
        raise target.error
    _charge(ctx)
    _check_permission(ctx)
    assert target.handler is not None
    return target.handler(ctx)


async def _inject(ctx: Ctx, fault: Fault) -> Response | None:
    """Apply a fault: wait its delay, then answer its error or garbage (None: carry on)."""
    if fault.delay > 0:
        await asyncio.sleep(fault.delay)
    if fault.is_error:
        _fault_usage(ctx, fault.code, fault.status, fault.regain_minutes)
        if fault.quote is not None:
            raise tokens.quoting_error(ctx, fault, _token_value(ctx))
        raise errors.fault_error(
            code=fault.code,
            status=fault.status,
            message=fault.message,
            subcode=fault.subcode,
            is_transient=fault.is_transient,
        )
    if fault.garbage is not None:
        body, media_type = GARBAGE[fault.garbage]
        return Response(body, 200, media_type=media_type)
    return None


def _token_value(ctx: Ctx) -> str | None:
    """The call's token: `access_token=`, else an `Authorization: Bearer` / `OAuth` header."""
    header = ctx.request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    bearer = value.strip() if scheme.lower() in ("bearer", "oauth") and value else None
    return ctx.params.get("access_token") or bearer


def _token(ctx: Ctx) -> Token:
    """Meta checks the token before the object: 104 missing, 190/467 unknown, 190 for a
    token of the other login type on this host, 190/463 expired."""
    value = _token_value(ctx)
    if not value:
        raise errors.missing_token()
    token = ctx.world.token(value)
    if token is None:
        raise errors.invalid_token()
    if ctx.host is not None and token.kind != ctx.host and not _app_token_on(token, ctx.host):
        raise errors.unparsable_token()  # each host parses its own login's tokens only
    now = ctx.now()
    if token.expired(now):
        assert token.expires_at is not None
        raise errors.expired_token(token.expires_at, now)
    return token


def _app_token_on(token: Token, host: str) -> bool:
    """An app token (`APP_ID|APP_SECRET`) is a Facebook Graph token, e.g. for debug_token."""
    return token.kind == "app" and host == "facebook"


def _check_token(ctx: Ctx) -> None:
    """The token, then whose object the path names (100/33 for another owner's)."""
    token = ctx.token = _token(ctx)
    platform = "threads" if token.kind == "threads" else "instagram"
    target = ctx.target
    if target.kind == "me":
        handler = threads.user if platform == "threads" else graph.me
        ctx.target = Target("me", platform, handler)
    elif target.platform is not None and target.platform != platform:
        raise errors.invalid_token()  # a token of the other platform does not parse there
    if ctx.owner is None:
        ctx.owner = min(token.owners)
    elif ctx.owner not in token.owners and ctx.target.error is None:
        raise errors.object_not_found(ctx.target.object_id or ctx.owner)


def _check_permission(ctx: Ctx) -> None:
    denial = ctx.world.denial(ctx.owner, ctx.target.kind)
    if denial is not None:
        instagram_login = ctx.token is not None and ctx.token.kind == "instagram"
        text = denial.text(ctx.target.kind, instagram_login)
        raise errors.permission_denied(denial.code, text)


def _charge(ctx: Ctx) -> None:
    world = ctx.world
    platform = ctx.target.platform or "instagram"
    ctx.app = world.charge_app(platform)
    if ctx.app.over:
        raise errors.throttled(4)
    if platform == "instagram" and ctx.owner in world.accounts and ctx.target.kind != "refresh":
        ctx.buc = world.charge(ctx.owner)
        if ctx.buc.over:
            raise errors.throttled(80002)


def _fault_usage(ctx: Ctx, code: int | None, status: int | None, regain: int) -> None:
    """A throttle fault shows in the headers too: usage at 100 % and a regain estimate."""
    if code == 4 or (code is None and status == 429):
        ctx.app = Charge(100, regain, over=True)
    elif code in errors.THROTTLE_CODES:
        ctx.buc = Charge(100, regain, over=True)


def _usage_headers(ctx: Ctx) -> dict[str, str]:
    """X-App-Usage in the host's shape; on Instagram routes X-Business-Use-Case-Usage."""
    world, platform = ctx.world, ctx.target.platform or "instagram"
    app = ctx.app or world.peek(f"app:{platform}", world.config.app_budget)
    shape = app.usage(instagram_login=ctx.host == "instagram")
    headers = {"x-app-usage": json.dumps(shape, separators=(",", ":"))}
    if platform != "instagram":
        return headers
    buc: dict[str, Any] = {}
    if ctx.owner is not None and ctx.owner in world.accounts:
        usage = ctx.buc or world.usage(ctx.owner)
        entry = {
            "type": "instagram",
            **usage.usage(),
            "estimated_time_to_regain_access": usage.regain_minutes,
        }
        buc[ctx.owner] = [entry]
    headers["x-business-use-case-usage"] = json.dumps(buc, separators=(",", ":"))
    return headers
