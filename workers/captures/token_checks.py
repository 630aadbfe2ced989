"""Facebook Login token expiry, read once a day per account from debug_token (run by the
hourly `refresh_tokens` job, and so at worker start too).

Facebook Login tokens are not refreshed by the archiver, so their expiry is only known by
asking (https://developers.facebook.com/docs/graph-api/reference/debug_token): `expires_at`
(0: never, e.g. a long-lived Page token) and `data_access_expires_at` go on the account. A
check Meta refuses (no app token and a token whose user has no role on the app, a wrong
META_APP_ID) is recorded with its reason and asked again a day later; throttling and
transient failures are asked again at the next hourly run. A token Meta reports dead flags
the account for re-authorisation, logged once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.engine import Engine

from core.config import Settings
from models.types import utcnow
from store.story_bookkeeping import account_credentials, flag_reauth
from store.token_renewal import due_token_checks, store_token_check
from workers.meta.api_errors import AuthError, MetaError, Throttled, Transient
from workers.runtime.context import Context, in_thread

log = logging.getLogger(__name__)

CHECK_EVERY = timedelta(days=1)
CHECKS_PER_RUN = 250  # an hourly run's share: 6,000 accounts a day, no burst at start
CHECKED, REFUSED, LATER = "checked", "check_refused", "check_later"


def app_token(settings: Settings) -> str | None:
    """`{app-id}|{app-secret}`, Meta's app access token, when both are configured."""
    secret = settings.meta_app_secret
    if not settings.meta_app_id or secret is None:
        return None
    return f"{settings.meta_app_id}|{secret.get_secret_value()}"


async def check_token_expiries(ctx: Context) -> dict[str, int]:
    """Ask debug_token for every Facebook Login token not asked today; counts by outcome."""
    engine: Engine = ctx["engine"]
    due = await in_thread(
        ctx, due_token_checks, engine, now=utcnow(), every=CHECK_EVERY, limit=CHECKS_PER_RUN
    )
    counts = {CHECKED: 0, REFUSED: 0, LATER: 0}
    for account_id in due:
        counts[await _check_one(ctx, account_id)] += 1
    return counts


async def _check_one(ctx: Context, account_id: int) -> str:
    engine: Engine = ctx["engine"]
    account = await in_thread(ctx, account_credentials, engine, account_id)
    if account is None:
        return LATER
    token = app_token(ctx["settings"])
    try:
        info = await ctx["graph"].debug_token(account, app_token=token)
    except (Throttled, Transient) as exc:
        log.info(
            "account %s: token expiry check deferred: %s",
            account_id,
            exc,
            extra={"account_id": account_id},
        )
        return LATER
    except MetaError as exc:
        return await _refused(ctx, account_id, exc, by_app=token is not None)
    await in_thread(
        ctx,
        store_token_check,
        engine,
        account_id=account_id,
        expires_at=info.expires_at,
        data_access_expires_at=info.data_access_expires_at,
    )
    if not info.is_valid:
        await _flag(ctx, account_id, f"Meta reports the Facebook Login token dead: {info.error}")
    return CHECKED


async def _refused(ctx: Context, account_id: int, exc: MetaError, *, by_app: bool) -> str:
    """Record why debug_token would not answer; an auth error on the token itself flags it.
    The reason leaves out the call's fbtrace_id, so the same refusal is logged once."""
    said = f"{exc.message} (code {exc.code})"
    if isinstance(exc, AuthError) and not by_app:
        await _flag(ctx, account_id, f"the Facebook Login token is not valid: {said}")
    why = f"debug_token refused: {said}"
    if isinstance(exc, AuthError) and by_app:
        why = f"debug_token refused the app token (check META_APP_ID, META_APP_SECRET): {said}"
    elif not by_app:
        why += "; set META_APP_ID so that the app token asks"
    new = await in_thread(ctx, store_token_check, ctx["engine"], account_id=account_id, error=why)
    if new:
        log.warning(
            "account %s: token expiry unknown: %s",
            account_id,
            why,
            extra={"account_id": account_id},
        )
    return REFUSED


async def _flag(ctx: Context, account_id: int, reason: str) -> None:
    if await in_thread(ctx, flag_reauth, ctx["engine"], account_id=account_id, reason=reason):
        log.warning("account %s: %s", account_id, reason, extra={"account_id": account_id})
