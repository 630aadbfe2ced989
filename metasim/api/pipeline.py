"""The pipeline every Meta call goes through, from fault to handler, and its usage headers.

Each Meta call goes: injected fault (delay, error or a garbage 200) -> token (104 missing,
190/467 unknown, 190 "Cannot parse access token" for a token of the other login type on this
host, 190/463 expired) -> path: API version (metasim.api.versions) and object (100/33) -> app
budget or block (code 4) -> account budget or block (80002, Instagram only) -> permission
denied on demand (10, 200-299) -> handler. Every answer, errors included, carries X-App-Usage (in
instagram.instagram.com's own shape on that host) and, on Instagram routes,
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

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from metasim.api import error_bodies, instagram, threads
from metasim.api.request import Ctx, Target
from metasim.api.routing import route
from metasim.world.entities import Token
from metasim.world.faults import GARBAGE, Fault
from metasim.world.limits import Charge
from metasim.world.world import World

log = logging.getLogger(__name__)
API_VERSION_HEADER = "facebook-api-version"


async def answer(world: World, request: Request) -> Response:
    """Run one Meta call through the pipeline and log it."""
    started, at = time.perf_counter(), world.now()
    params = dict(request.query_params)
    host, version, target = route(world, request.url.path, params.get("grant_type"))
    ctx = Ctx(world, request, params, target, version=version.served, host=host)
    ctx.owner = target.owner
    try:
        if request.method != "GET":
            raise error_bodies.api_error(400, 100, f"Unsupported {request.method.lower()} request.")
        result = await _run(ctx)
        response = result if isinstance(result, Response) else JSONResponse(result)
        code = None
    except error_bodies.MetaApiError as exc:
        response = _error_response(exc)
        code = exc.code
    response.headers.update(_usage_headers(ctx))
    response.headers["x-fb-trace-id"] = error_bodies.fbtrace_id()
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


def _error_response(exc: error_bodies.MetaApiError) -> Response:
    if isinstance(exc.body, str):
        return PlainTextResponse(exc.body, exc.status, headers=exc.headers, media_type="text/html")
    return JSONResponse(exc.body, exc.status, headers=exc.headers)


async def _run(ctx: Ctx) -> dict[str, Any] | Response:
    fault = ctx.world.faults.take(ctx.target.owner, ctx.target.kind)
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
            raise quoting_error(ctx, fault, _token_value(ctx))
        raise error_bodies.fault_error(
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


def quoting_error(ctx: Ctx, fault: Fault, value: str | None) -> error_bodies.MetaApiError:
    """The error of a fault that quotes a token back (`value` is the call's): the caller's
    own, an older one of the same owner, or the request's URL with its `access_token=`
    (error_bodies.QUOTE_DEFAULTS for the code and wording unless the fault gives them)."""
    token = ctx.world.tokens.token(value) if value else None
    if token is None:  # nothing to quote: Meta's own answer to a missing or unknown token
        raise error_bodies.invalid_token() if value else error_bodies.missing_token()
    assert fault.quote is not None
    quoted = {
        "token": lambda: token.value,
        "old_token": lambda: ctx.world.tokens.older_token(token).value,
        "url": lambda: str(ctx.request.url),
    }[fault.quote]()
    code, subcode, template = error_bodies.QUOTE_DEFAULTS[fault.quote]
    own = fault.code is not None or fault.status is not None
    return error_bodies.fault_error(
        code=fault.code if own else code,
        status=fault.status,
        message=(fault.message or template).replace("{quote}", quoted),
        subcode=fault.subcode if own else subcode,
        is_transient=fault.is_transient,
    )


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
        raise error_bodies.missing_token()
    token = ctx.world.tokens.token(value)
    if token is None:
        raise error_bodies.invalid_token()
    if ctx.host is not None and token.kind != ctx.host and not _app_token_on(token, ctx.host):
        raise error_bodies.unparsable_token()  # each host parses its own login's tokens only
    now = ctx.now()
    if token.expired(now):
        assert token.expires_at is not None
        raise error_bodies.expired_token(token.expires_at, now)
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
        handler = threads.user if platform == "threads" else instagram.me
        ctx.target = Target("me", platform, handler)
    elif target.platform is not None and target.platform != platform:
        raise error_bodies.invalid_token()  # a token of the other platform does not parse there
    if ctx.owner is None:
        ctx.owner = min(token.owners)
    elif ctx.owner not in token.owners and ctx.target.error is None:
        raise error_bodies.object_not_found(ctx.target.object_id or ctx.owner)


def _check_permission(ctx: Ctx) -> None:
    denial = ctx.world.budgets.denial(ctx.owner, ctx.target.kind)
    if denial is not None:
        instagram_login = ctx.token is not None and ctx.token.kind == "instagram"
        text = denial.text(ctx.target.kind, instagram_login)
        raise error_bodies.permission_denied(denial.code, text)


def _charge(ctx: Ctx) -> None:
    world = ctx.world
    platform = ctx.target.platform or "instagram"
    ctx.app = world.budgets.charge_app(platform)
    if ctx.app.over:
        raise error_bodies.throttled(4)
    if (
        platform == "instagram"
        and ctx.owner in world.state.accounts
        and ctx.target.kind != "refresh"
    ):
        ctx.buc = world.budgets.charge(ctx.owner)
        if ctx.buc.over:
            raise error_bodies.throttled(80002)


def _fault_usage(ctx: Ctx, code: int | None, status: int | None, regain: int) -> None:
    """A throttle fault shows in the headers too: usage at 100 % and a regain estimate."""
    if code == 4 or (code is None and status == 429):
        ctx.app = Charge(100, regain, over=True)
    elif code in error_bodies.THROTTLE_CODES:
        ctx.buc = Charge(100, regain, over=True)


def _usage_headers(ctx: Ctx) -> dict[str, str]:
    """X-App-Usage in the host's shape; on Instagram routes X-Business-Use-Case-Usage."""
    world, platform = ctx.world, ctx.target.platform or "instagram"
    app = ctx.app or world.budgets.peek(f"app:{platform}", world.config.app_budget)
    shape = app.usage(instagram_login=ctx.host == "instagram")
    headers = {"x-app-usage": json.dumps(shape, separators=(",", ":"))}
    if platform != "instagram":
        return headers
    buc: dict[str, Any] = {}
    if ctx.owner is not None and ctx.owner in world.state.accounts:
        usage = ctx.buc or world.budgets.usage(ctx.owner)
        entry = {
            "type": "instagram",
            **usage.usage(),
            "estimated_time_to_regain_access": usage.regain_minutes,
        }
        buc[ctx.owner] = [entry]
    headers["x-business-use-case-usage"] = json.dumps(buc, separators=(",", ":"))
    return headers
