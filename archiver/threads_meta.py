"""The Meta side of the `accounts` commands: the clients and the one-line errors they share
(archiver.meta_checks checks the tokens of `add` and `update` with them), which Threads
profile a token belongs to (`threads`), and the `views` history backfill with its progress
bar.

Clients are built as the worker builds them (workers.meta.transport.make_http_client,
workers.meta.clients.build_clients), with the shared Redis pacer when REDIS_URL is set, so a
command never calls an account the workers are holding back. A Meta error becomes one line
and an exit code of its own (6: Meta refused, fix the token or the request; 7: throttled or
unavailable, try later), never with a token in it. Command handlers import this module
inside themselves, so `archiver --help` never loads the workers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine

from archiver.progress import ProgressBar
from core.config import Settings
from core.errors import (
    ArchiverError,
    ConflictError,
    MetaRefused,
    MetaUnavailable,
    StoreUnavailable,
)
from jobqueue.redis_url import async_client, close_async, parse_redis_url
from models.accounts import Account
from store.threads_bookkeeping import flag_threads_reauth
from workers.captures.threads_polls import backfill_views
from workers.meta.api_errors import (
    AuthError,
    MetaError,
    Throttled,
    Transient,
)
from workers.meta.clients import MetaClients, build_clients
from workers.meta.graph_api import IgAccount
from workers.meta.threads_api import ThreadsAccount
from workers.meta.transport import make_http_client

OPERATOR = "operator"
CONNECTED = "connected_threads_user"


@dataclass(frozen=True)
class Link:
    """The Threads profile to store and how the link was established (https://developers.facebook.com/documentation/instagram-platform/instagram-graph-api/reference/ig-user/connected_threads_user)."""

    threads_user_id: str
    source: str
    note: str | None = None


def explain(
    exc: MetaError,
    what: str,
    secrets: Sequence[str | None] = (),
    *,
    renew: str = "",
    retry: str = "",
) -> ArchiverError:
    """One line for the operator: what failed, why, and whether trying again can help;
    `renew` and `retry` end the line with the command for a refused token, or for later."""
    exc.redact(*secrets)
    if isinstance(exc, AuthError):
        return MetaRefused(f"{what}: the token was refused ({exc.reason}): {exc}{renew}")
    if isinstance(exc, Throttled):
        wait = math.ceil(exc.retry_after)
        return MetaUnavailable(
            f"{what}: Meta throttles this account, try in {wait} s: {exc}{retry}"
        )
    if isinstance(exc, Transient):
        return MetaUnavailable(f"{what}: Meta did not answer, try again later: {exc}{retry}")
    return MetaRefused(f"{what}: {exc}")


@asynccontextmanager
async def open_clients(settings: Settings) -> AsyncIterator[MetaClients]:
    """The worker's HTTP client, plus Redis for the shared pauses when REDIS_URL is set."""
    target = parse_redis_url(settings.redis_url) if settings.redis_url else None  # ConfigError
    redis = async_client(target, Redis) if target is not None else None
    http = make_http_client(settings)
    try:
        yield build_clients(http, settings, redis)
    except RedisError as exc:
        msg = f"Redis unavailable (REDIS_URL, for the shared pauses): {exc.__class__.__name__}"
        raise StoreUnavailable(msg) from None
    finally:
        await http.aclose()
        if redis is not None:
            await close_async(redis)


async def _connected(clients: MetaClients, account: IgAccount) -> str | None:
    """The Threads user Instagram says is connected (Facebook Login only, else None)."""
    try:
        return await clients.graph.connected_threads_user(account)
    except MetaError as exc:
        what = f"looking up connected_threads_user of IG user {account.ig_user_id}"
        raise explain(exc, what, [account.ig_token]) from exc


async def threads_me(clients: MetaClients, token: str, claimed: str | None) -> str:
    """The Threads user id the token belongs to (/me): the token checked on the way."""
    try:
        body = await clients.threads.me(
            ThreadsAccount(claimed or "me", token), fields="id,username"
        )
    except MetaError as exc:
        raise explain(exc, "checking the Threads token (/me)", [token]) from exc
    found = body.get("id")
    if not found:
        msg = "the Threads API answered /me without an id"
        raise MetaRefused(msg)
    return str(found)


async def _find(
    settings: Settings, account: IgAccount, token: str, claimed: str | None, lookup: bool
) -> Link:
    async with open_clients(settings) as clients:
        connected = await _connected(clients, account) if lookup else None
        own = await threads_me(clients, token, claimed or connected)
    if claimed is not None and own != claimed:
        msg = f"the Threads token belongs to Threads user {own}, not {claimed}: nothing changed"
        raise ConflictError(msg)
    if connected is not None and own != connected:
        msg = (
            f"IG user {account.ig_user_id} is connected to Threads user {connected}, but the "
            f"Threads token belongs to {own}: give that profile's token; nothing changed"
        )
        raise ConflictError(msg)
    if connected is not None:
        return Link(own, CONNECTED)
    note = None
    if lookup:
        where = "Instagram reports none" if account.login == "facebook" else "Instagram Login"
        note = f"no connected_threads_user ({where}): linking the token's own profile"
    return Link(own, OPERATOR, note)


def find_threads_user(
    settings: Settings, *, account: IgAccount, token: str, claimed: str | None, lookup: bool
) -> Link:
    """Which Threads profile to link: `claimed`, or looked up; /me must agree either way."""
    return asyncio.run(_find(settings, account, token, claimed, lookup))


async def _backfill(settings: Settings, engine: Engine, account: Account, bar: ProgressBar) -> int:
    async with open_clients(settings) as clients:
        return await backfill_views(
            engine=engine, client=clients.threads, account=account, progress=bar.update
        )


def run_backfill(
    settings: Settings, engine: Engine, account: Account, *, stream: IO[str] | None = None
) -> int:
    """The views backfill with its bar; prints a summary and returns the values stored.

    Every chunk is a committed snapshot of its own, so an error or Ctrl+C keeps what is done
    and running it again (`archiver accounts backfill`) skips the stored chunks' slots.
    """
    bar = ProgressBar(f"views of Threads user {account.threads_user_id}", stream=stream)
    try:
        stored = asyncio.run(_backfill(settings, engine, account, bar))
    except MetaError as exc:
        bar.close()
        raise _stopped(exc, engine, account, bar) from exc
    except KeyboardInterrupt:
        bar.close()
        print(
            f"interrupted: {bar.done} of {bar.total or '?'} chunks stored; "
            f"`archiver accounts backfill --id {account.id}` finishes it",
            file=bar.stream,
        )
        raise
    bar.close()
    print(f"backfilled Threads views: {stored} values in {bar.total} chunks")
    return stored


def _stopped(exc: MetaError, engine: Engine, account: Account, bar: ProgressBar) -> ArchiverError:
    """The line for a backfill Meta stopped; a refused token is flagged, as a poll would."""
    assert account.id is not None
    exc.redact(account.threads_token)
    if isinstance(exc, AuthError):
        flag_threads_reauth(engine, account_id=account.id, reason=f"backfill: {exc}")
    done = f"{bar.done} of {bar.total or '?'} chunks stored"
    what = f"the views backfill of account {account.name!r} stopped ({done})"
    renew = (
        f"; give a new one with `archiver accounts threads --id {account.id} "
        f"--threads-user-id {account.threads_user_id} --threads-token TOKEN`"
    )
    retry = f"; `archiver accounts backfill --id {account.id}` resumes"
    return explain(exc, what, renew=renew, retry=retry)
