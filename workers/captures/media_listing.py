"""`list_ig_media(account_id, due_epoch)`: discover an account's feed posts and Reels through
the /media edge every IG_MEDIA_POLL_SECONDS, and `backfill_media`, the bounded listing of older
ones behind `archiver accounts backfill --media-since`.

The edge lists newest first (https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/media),
so a listing follows its pages only until it reaches media older than the newest one known
(minus a day, for media whose timestamp lands out of order); an account's first listing goes
back FIRST_LISTING, older media wait for a backfill. Each new media is captured at once
(`first`) and then on its decaying schedule (workers.captures.media_posts).

A listing stops at a throttle (due again after the pause), an auth failure (the account is
flagged, as by the story poll), or any other failure (due again with back-off, the reason in
`account.media_problem`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from jobqueue.names import IG_MEDIA, LIST_IG_MEDIA
from models.accounts import Account
from models.types import utcnow
from store.backoff import (
    INSTAGRAM,
    LONGEST_WAIT,
    MEDIA,
    human,
    record_error,
    record_failure,
    record_success,
)
from store.ig_media import FoundMedia, newest_media_at, store_media
from store.story_bookkeeping import account_credentials, flag_reauth
from workers.captures.jobs import enqueue_capture, timed
from workers.meta.api_errors import AuthError, MetaError, Throttled
from workers.meta.graph_api import GraphClient, IgMedia
from workers.runtime.context import Context, in_thread
from workers.runtime.failures import guarded, rejection

log = logging.getLogger(__name__)

FIRST_LISTING = timedelta(days=30)  # how far back an account's first listing goes
OVERLAP = timedelta(days=1)
LIST_MAX_TRIES = 3


def found(items: list[IgMedia]) -> list[FoundMedia]:
    return [
        FoundMedia(
            m.id, m.timestamp, m.media_product_type, m.media_type, m.permalink, m.caption,
            dict(m.raw),
        )
        for m in items
    ]  # fmt: skip


async def _note_error(ctx: Context, error: str, account_id: int, due_epoch: int) -> None:
    await in_thread(
        ctx, record_error, ctx["engine"], account_id=account_id, side=MEDIA, error=error
    )


async def _gave_up(ctx: Context, error: str, account_id: int, due_epoch: int) -> str:
    reason = f"listing feed posts and Reels failed unexpectedly ({error}): see the worker log"
    return await _back_off(ctx, account_id, error, reason)


@guarded(LIST_IG_MEDIA, max_tries=LIST_MAX_TRIES, record=_note_error, give_up=_gave_up)
async def list_ig_media(ctx: Context, account_id: int, due_epoch: int) -> str:
    """One listing: the media newer than the newest known; each new one captured at once."""
    engine: Engine = ctx["engine"]
    done = timed(ctx, f"feed and Reels of account {account_id}")
    account = await in_thread(ctx, account_credentials, engine, account_id)
    if account is None or account.state != "active":
        return done("skipped: account not active")
    newest = await in_thread(ctx, newest_media_at, engine, account_id=account_id)
    now = utcnow()
    since = now - FIRST_LISTING if newest is None else newest - OVERLAP
    client: GraphClient = ctx["graph"]
    try:
        items = await client.list_media(account, newer_than=since)
    except MetaError as exc:
        return done(f"stopped: {exc}; {await _failed(ctx, account, exc)}")
    added = await in_thread(
        ctx, store_media, engine, account_id=account_id, found=found(items), now=now
    )
    for media_id in added:
        await enqueue_capture(ctx["redis"], IG_MEDIA, media_id, "first")
    every = timedelta(seconds=ctx["settings"].ig_media_poll_seconds)
    await in_thread(
        ctx, record_success, engine, account_id=account_id, side=MEDIA, next_at=now + every
    )
    return done(f"{len(items)} listed, {len(added)} new")


async def _failed(ctx: Context, account: Account, exc: MetaError) -> str:
    """Throttled: due again after the pause. Auth: the account is flagged (once) and the
    listing waits for a new token. Anything else: back-off, the reason kept."""
    assert account.id is not None
    error = str(exc)
    if isinstance(exc, Throttled):
        wait = timedelta(seconds=max(exc.retry_after, 1.0))
        await in_thread(
            ctx,
            record_error,
            ctx["engine"],
            account_id=account.id,
            side=MEDIA,
            error=error,
            next_at=utcnow() + wait,
        )
        return f"next listing in {human(wait)}"
    if isinstance(exc, AuthError):
        await in_thread(ctx, flag_reauth, ctx["engine"], account_id=account.id, reason=error)
    return await _back_off(ctx, account.id, error, rejection(exc, INSTAGRAM))


async def _back_off(ctx: Context, account_id: int, error: str, reason: str) -> str:
    wait = await in_thread(
        ctx,
        record_failure,
        ctx["engine"],
        account_id=account_id,
        side=MEDIA,
        error=error,
        reason=reason,
        cap=LONGEST_WAIT,
    )
    log.warning(
        "account %s: %s; next feed/Reels listing in %s",
        account_id,
        reason,
        human(wait),
        extra={"account_id": account_id},
    )
    return f"next listing in {human(wait)}"


async def backfill_media(
    *,
    engine: Engine,
    client: GraphClient,
    account: Account,
    since: datetime,
    progress: Callable[[int, int, int], None] | None = None,
    now: datetime | None = None,
) -> int:
    """Feed posts and Reels posted since `since` that are not known yet, stored page by page,
    each due a `first` capture at once (the workers' tick takes it from there);
    `progress(days covered, days in all, media added)` after each page. Returns the media
    added; running it again adds none, so an interrupted backfill is simply run again."""
    assert account.id is not None
    account_id = account.id
    moment = now or utcnow()
    total = max(1, (moment - since).days)
    added = 0

    def page(items: list[IgMedia]) -> None:
        nonlocal added
        fresh = [m for m in items if m.timestamp is None or m.timestamp >= since]
        added += len(store_media(engine, account_id=account_id, found=found(fresh), now=moment))
        oldest = min((m.timestamp for m in items if m.timestamp), default=moment)
        if progress is not None:
            progress(min(total, max(0, (moment - oldest).days)), total, added)

    await client.list_media(account, newer_than=since, on_page=page)
    if progress is not None:
        progress(total, total, added)
    return added
