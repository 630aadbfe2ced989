"""`refresh_tokens` (cron, hourly and at start): keep Instagram Login and Threads long-lived
tokens alive, and read Facebook Login tokens' expiry (workers.captures.token_checks). A token Meta
will not refresh flags its side of the account for re-authorisation, logged once; a
transient failure waits for the next hour."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.engine import Engine

from core.config import Settings
from models.types import utcnow
from store.story_bookkeeping import account_credentials, flag_reauth
from store.threads_bookkeeping import flag_threads_reauth
from store.token_renewal import INSTAGRAM, due_refreshes, store_refreshed
from workers.captures.threads_polls import threads_account
from workers.captures.token_checks import check_token_expiries
from workers.meta.api_errors import MetaError, Throttled, Transient
from workers.meta.graph_api import TokenGrant
from workers.runtime.context import Context, in_thread

log = logging.getLogger(__name__)


async def refresh_tokens(ctx: Context) -> dict[str, int]:
    """Refresh every due token, then check the Facebook Login tokens due a check; returns
    counts by outcome for the job log."""
    settings: Settings = ctx["settings"]
    engine: Engine = ctx["engine"]
    every = timedelta(days=settings.token_refresh_days)
    due = await in_thread(ctx, due_refreshes, engine, now=utcnow(), every=every)
    counts = {"refreshed": 0, "failed": 0, "later": 0}
    for account_id, platform in due:
        counts[await _refresh_one(ctx, account_id, platform)] += 1
    counts |= await check_token_expiries(ctx)
    if any(counts.values()):
        log.info("token refresh: %s", counts, extra=counts)
    return counts


async def _refresh_one(ctx: Context, account_id: int, platform: str) -> str:
    engine: Engine = ctx["engine"]
    account = await in_thread(ctx, account_credentials, engine, account_id)
    if account is None:
        return "later"
    try:
        grant: TokenGrant
        if platform == INSTAGRAM:
            grant = await ctx["graph"].refresh_ig_token(account)
        else:
            grant = await ctx["threads"].refresh_token(threads_account(account))
    except (Throttled, Transient) as exc:
        log.info(
            "account %s: %s token refresh deferred: %s",
            account_id,
            platform,
            exc,
            extra={"account_id": account_id},
        )
        return "later"
    except MetaError as exc:
        reason = f"the {platform} token could not be refreshed: {exc}"
        flag = flag_reauth if platform == INSTAGRAM else flag_threads_reauth
        if await in_thread(ctx, flag, engine, account_id=account_id, reason=reason):
            log.warning("account %s: %s", account_id, reason, extra={"account_id": account_id})
        return "failed"
    await in_thread(
        ctx,
        store_refreshed,
        engine,
        account_id=account_id,
        platform=platform,
        token=grant.access_token,
        expires_at=grant.expires_at,
    )
    return "refreshed"
