"""Whether the tokens given to `accounts add` and `accounts update` are Meta's and own the ids
given, asked before anything is stored; `--no-check` skips it.

Instagram: the token reads its IG user (Facebook Login) or `/me` names it (Instagram Login).
A Facebook Login token is then shown to debug_token
(https://developers.facebook.com/docs/graph-api/reference/debug_token): a token Meta calls
invalid is refused, and its expiry and data-access expiry are stored with the account, so
`status` and the token alerts know them from the start. A debug_token that will not answer
(no META_APP_ID and a token whose user has no role on the app) leaves the expiry to the
workers' daily check and says so. Threads: `/me` names the profile.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from archiver.threads_meta import explain, open_clients, threads_me
from core.config import Settings
from core.errors import MetaRefused
from models.accounts import Account
from store.access_renewal import NewAccess
from workers.captures.token_checks import app_token
from workers.meta.api_errors import MetaError, ObjectNotFound, PermissionDenied
from workers.meta.clients import MetaClients
from workers.meta.graph_api import IgAccount
from workers.meta.threads_api import ThreadsAccount
from workers.meta.token_info import TokenInfo


@dataclass(frozen=True)
class Checked:
    """What the check learnt: debug_token's answer for a Facebook Login token, or why none."""

    token_info: TokenInfo | None = None
    note: str | None = None


async def _check_ig(clients: MetaClients, account: IgAccount) -> None:
    """The Instagram token works and owns `account.ig_user_id`."""
    what = f"checking the Instagram token ({account.login} login) on IG user {account.ig_user_id}"
    try:
        body = await clients.graph.whoami(account)
    except (ObjectNotFound, PermissionDenied) as exc:
        exc.redact(account.ig_token)
        msg = f"{what}: the token cannot read this IG user (another account's token?): {exc}"
        raise MetaRefused(msg) from exc
    except MetaError as exc:
        raise explain(exc, what, [account.ig_token]) from exc
    own = str(body.get("user_id") or body.get("id") or "")
    if own != account.ig_user_id:
        msg = f"{what}: the token belongs to IG user {own or '?'}, not {account.ig_user_id}"
        raise MetaRefused(msg)


async def _debug(clients: MetaClients, settings: Settings, account: IgAccount) -> Checked:
    """debug_token on a Facebook Login token that read its IG user: dead is refused, a
    refusal to answer is a note (the workers ask again daily)."""
    token = app_token(settings)
    try:
        info = await clients.graph.debug_token(account, app_token=token)
    except MetaError as exc:
        exc.redact(account.ig_token, token)
        hint = "" if token else "; set META_APP_ID so that the app token asks"
        return Checked(note=f"token expiry not known yet: debug_token refused: {exc}{hint}")
    if not info.is_valid:
        msg = f"debug_token: Meta reports the Facebook Login token not valid: {info.error}"
        raise MetaRefused(msg)
    return Checked(token_info=info)


async def _check(
    settings: Settings, ig: IgAccount | None, threads: ThreadsAccount | None
) -> Checked:
    checked = Checked()
    async with open_clients(settings) as clients:
        if ig is not None:
            await _check_ig(clients, ig)
            if ig.login == "facebook":
                checked = await _debug(clients, settings, ig)
        if threads is not None:
            own = await threads_me(clients, threads.threads_token, threads.threads_user_id)
            if own != threads.threads_user_id:
                msg = (
                    f"checking the Threads token (/me): it belongs to Threads user {own}, "
                    f"not {threads.threads_user_id}"
                )
                raise MetaRefused(msg)
    return checked


def check_tokens(
    settings: Settings, *, ig: IgAccount | None, threads: ThreadsAccount | None
) -> Checked:
    """Ask Meta whether each token given works and owns its id; MetaRefused (exit 6) says
    which does not, MetaUnavailable (exit 7) when Meta cannot say now. No token is quoted."""
    return asyncio.run(_check(settings, ig, threads))


def check_account(settings: Settings, account: Account, access: NewAccess | None = None) -> Checked:
    """check_tokens for the tokens about to be stored: all of `account`'s (add), or the
    sides `access` replaces (update)."""
    ig_token, login = account.ig_token, account.login
    threads_token = account.threads_token
    if access is not None:
        ig_token, login = access.ig_token or ig_token, access.login or login
        threads_token = access.threads_token
    ig_side = access is None or access.ig_token is not None or access.login is not None
    ig = IgAccount(account.ig_user_id, ig_token, login) if ig_side else None
    threads = None
    if threads_token is not None and account.threads_user_id is not None:
        threads = ThreadsAccount(account.threads_user_id, threads_token)
    return check_tokens(settings, ig=ig, threads=threads)


def describe(info: TokenInfo) -> str:
    """`expires 2027-02-01 10:00 UTC, data access until ...`, or `never expires`."""

    def day(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M UTC")

    expiry = "never expires" if info.expires_at is None else f"expires {day(info.expires_at)}"
    if info.data_access_expires_at is not None:
        expiry += f", data access until {day(info.data_access_expires_at)}"
    return expiry
