"""The dashboard application: `create_dashboard(settings)` builds it, its lifespan owns the engine.

Read-only pages over the archive, on a listener of their own (DASHBOARD_HOST:DASHBOARD_PORT),
never on the webhook port. Queries are synchronous SQLAlchemy, run in the thread pool; a page
renders from one connection. Pages send a Content-Security-Policy that allows no script at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from core.config import Settings
from dashboard import account_insights, queries
from dashboard.auth import TokenAuth, require_token_if_exposed
from dashboard.exports import export
from dashboard.html import Html, page, text
from dashboard.pages import accounts_page, deliveries_page
from dashboard.subjects import subject_page, threads_user_page
from jobqueue.redis_url import RedisTarget, async_client, close_async, parse_redis_url
from models.db import create_db_engine
from reports.coverage import account_statuses, delivery_counts
from reports.figures import Counters, read_counters
from reports.overdue import overdue_grace
from reports.pauses import read_pauses

log = logging.getLogger(__name__)
REDIS_TIMEOUT = 2.0  # the accounts page shows pauses as unknown rather than wait longer
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'none'"


def html(body: Html, status: int = 200) -> Response:
    return HTMLResponse(body, status, headers={"content-security-policy": CSP})


def not_found(what: str) -> Response:
    return html(page("Not found", text(f"{what} is not in the archive.")), 404)


async def accounts(request: Request) -> Response:
    state = request.app.state
    counters = await _counters(state.redis)
    now = datetime.now(UTC)

    def render() -> Html:
        grace = overdue_grace(state.settings.schedule_tick_seconds)
        statuses = account_statuses(state.engine, now=now, grace=grace)
        ids = [account.ig_user_id for account in statuses]
        pauses = read_pauses(state.settings.redis_url, ids)
        with state.engine.connect() as conn:
            return accounts_page(conn, statuses, counters, pauses, now)

    return html(await run_in_threadpool(render))


async def _counters(redis: Redis | None) -> Counters | None:
    if redis is None:
        return None
    try:
        return await asyncio.wait_for(read_counters(redis), REDIS_TIMEOUT)
    except (OSError, TimeoutError, ConnectionError) as exc:
        log.warning("throttle pauses unknown: Redis did not answer (%s)", exc.__class__.__name__)
        return None


def _subject(platform: str, subject_type: str, title: str) -> Callable[[Request], object]:
    async def endpoint(request: Request) -> Response:
        media_id = request.path_params["media_id"]

        def render() -> Html | None:
            with request.app.state.engine.connect() as conn:
                media = queries.subject(conn, platform, media_id)
                if media is None or media.subject_type != subject_type:
                    return None
                values = queries.versions(conn, platform, subject_type, media_id)
            kinds = {"platform": platform, "subject_type": subject_type}
            return subject_page(f"{title} {media_id}", media, values, **kinds)

        body = await run_in_threadpool(render)
        return not_found(f"{title} {media_id}") if body is None else html(body)

    return endpoint


async def threads_user(request: Request) -> Response:
    user_id = request.path_params["user_id"]

    def render() -> Html | None:
        with request.app.state.engine.connect() as conn:
            owner = queries.threads_owner(conn, user_id)
            rows = queries.threads_days(conn, user_id)
        return None if owner is None and not rows else threads_user_page(user_id, owner, rows)

    body = await run_in_threadpool(render)
    return not_found(f"Threads profile {user_id}") if body is None else html(body)


async def ig_account(request: Request) -> Response:
    ig_user_id = request.path_params["ig_user_id"]

    def render() -> Html | None:
        with request.app.state.engine.connect() as conn:
            owner = account_insights.account_name(conn, ig_user_id)
            rows = account_insights.account_days(conn, ig_user_id)
            audience = account_insights.newest_audience(conn, ig_user_id)
        if owner is None and not rows:
            return None
        return account_insights.account_insights_page(ig_user_id, owner, rows, audience)

    body = await run_in_threadpool(render)
    return not_found(f"Instagram account {ig_user_id}") if body is None else html(body)


async def deliveries(request: Request) -> Response:
    engine = request.app.state.engine

    def render() -> Html:
        counts = delivery_counts(engine)
        with engine.connect() as conn:
            return deliveries_page(conn, counts)

    return html(await run_in_threadpool(render))


def create_dashboard(settings: Settings) -> Starlette:
    """The dashboard; ConfigError when DASHBOARD_HOST is beyond loopback without a token, or
    REDIS_URL names no Redis."""
    require_token_if_exposed(settings)
    redis_target = parse_redis_url(settings.redis_url) if settings.redis_url else None
    routes = [
        Route("/", accounts),
        Route("/stories/{media_id}", _subject("instagram", "story", "Story")),
        Route("/threads/posts/{media_id}", _subject("threads", "threads_post", "Threads post")),
        Route("/feed/{media_id}", _subject("instagram", "feed", "Feed post")),
        Route("/reels/{media_id}", _subject("instagram", "reel", "Reel")),
        Route("/threads/users/{user_id}", threads_user),
        Route("/accounts/{ig_user_id}/insights", ig_account),
        Route("/deliveries", deliveries),
        Route("/export/{fmt}", export),
    ]
    token = settings.dashboard_token
    middleware = [Middleware(TokenAuth, token=token.get_secret_value())] if token else []
    app = Starlette(
        routes=routes, middleware=middleware, lifespan=_lifespan(settings, redis_target)
    )
    app.state.settings = settings
    return app


def _lifespan(
    settings: Settings, redis_target: RedisTarget | None
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        """Open the engine (and Redis, for the throttle figures); close them on shutdown."""
        app.state.engine = create_db_engine(settings.database_url, pool_size=2)
        app.state.redis = (
            async_client(redis_target, Redis, socket_timeout=REDIS_TIMEOUT)
            if redis_target is not None
            else None
        )
        try:
            yield
        finally:
            if app.state.redis is not None:
                await close_async(app.state.redis)
            app.state.engine.dispose()

    return lifespan
