"""`archiver accounts threads | backfill`: link, change or unlink an account's Threads
profile after `accounts add`, and run the `views` history backfill again (or, with
`--media-since`, the feed posts and Reels backfill: archiver.media_backfill).

A link is stored with how it was established: `connected_threads_user` when Instagram itself
names the profile
(https://developers.facebook.com/documentation/instagram-platform/instagram-graph-api/reference/ig-user/connected_threads_user),
`operator` when the operator does. Either way the
token's own /me must agree, so a token of another profile is never stored.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from archiver.commands import add_command, add_which, find_account, open_database, text
from archiver.token_input import THREADS, add_token_options, given, read_token
from core.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from archiver.commands import SubParsers
    from archiver.threads_meta import Link
    from core.config import Settings
    from models.accounts import Account

# Everything that belongs to one Threads profile and its token, cleared by --unlink.
THREADS_FIELDS = (
    "threads_user_id",
    "threads_token",
    "threads_link_source",
    "threads_linked_at",
    "threads_token_expires_at",
    "threads_token_refreshed_at",
    "threads_polled_at",
    "next_threads_poll_at",
    "threads_state_reason",
)


def register(inner: SubParsers) -> None:
    """Adds `threads` and `backfill` to the `accounts` subcommands."""
    link = add_command(
        inner,
        "threads",
        help_text="link, change or unlink an account's Threads profile",
        description="Link a Threads profile to an account (or change its token), then "
        "backfill its views history. --lookup asks Meta which profile: Instagram's "
        "connected_threads_user (Facebook Login), else the token's own /me. An explicit "
        "--threads-user-id must match the token's /me. The token comes from one of: "
        "--threads-token (`-` reads standard input), --threads-token-file, or "
        "ARCHIVER_THREADS_TOKEN.",
    )
    add_which(link)
    target = link.add_mutually_exclusive_group(required=True)
    target.add_argument("--threads-user-id", type=text, metavar="ID", help="Threads user id")
    target.add_argument("--lookup", action="store_true", help="ask Meta for the Threads user id")
    target.add_argument("--unlink", action="store_true", help="forget the Threads profile")
    add_token_options(link, THREADS)
    link.add_argument("--no-backfill", action="store_true", help="skip the views backfill")
    link.set_defaults(handler=run_threads, check=check_threads, parser=link)
    backfill = add_command(
        inner,
        "backfill",
        help_text="fetch the Threads views history again, or older feed posts and Reels",
        description="Fetch the daily views of the account's Threads profile from the API's "
        "earliest date (2024-04-13) to now, one stored snapshot per 30-day chunk. With "
        "--media-since DATE, list the account's feed posts and Reels back to DATE instead "
        "(the workers then capture each one found).",
    )
    add_which(backfill)
    backfill.add_argument(
        "--media-since",
        type=media_day,
        metavar="YYYY-MM-DD",
        help="backfill feed posts and Reels posted since this day (UTC)",
    )
    backfill.set_defaults(handler=run_backfill_command)


def media_day(value: str) -> date:
    """--media-since: a calendar day, not in the future."""
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        msg = f"{value!r} is not a day like 2026-01-31"
        raise argparse.ArgumentTypeError(msg) from None
    if day > datetime.now(UTC).date():
        msg = f"{value} is in the future"
        raise argparse.ArgumentTypeError(msg)
    return day


def check_threads(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of options, if anything (argparse cannot say)."""
    if args.unlink and (given(args, THREADS) or args.no_backfill):
        return "--unlink takes neither a Threads token nor --no-backfill"
    return None


def _load(engine: Engine, args: argparse.Namespace) -> Account:
    from models.db import session_scope

    with session_scope(engine) as session:
        return find_account(session, args)


def _store_link(engine: Engine, account_id: int, link: Link, token: str) -> Account:
    """The new profile and token, active and due for a poll at once."""
    from sqlmodel import select

    from models.accounts import Account
    from models.db import session_scope
    from models.types import utcnow

    with session_scope(engine) as session:
        stmt = select(Account).where(
            Account.threads_user_id == link.threads_user_id, Account.id != account_id
        )
        other = session.exec(stmt).first()
        if other is not None:
            msg = f"Threads user {link.threads_user_id} is linked to account {other.name!r}"
            raise ConflictError(msg)
        account = session.get(Account, account_id)
        if account is None:
            msg = f"no account with id {account_id}"
            raise NotFoundError(msg)
        for name in THREADS_FIELDS:
            setattr(account, name, None)
        now = utcnow()
        account.threads_user_id = link.threads_user_id
        account.threads_token = token
        account.threads_link_source = link.source
        account.threads_linked_at = now
        account.threads_state = "active"
        account.updated_at = now
        session.add(account)
    return account


def _link(args: argparse.Namespace, settings: Settings, engine: Engine) -> Account:
    from archiver.threads_meta import find_threads_user
    from models.accounts import mask_token
    from workers.meta.graph_api import IgAccount

    token = read_token(args, THREADS, settings)
    account = _load(engine, args)
    assert account.id is not None
    ig = IgAccount(account.ig_user_id, account.ig_token, account.login)
    link = find_threads_user(
        settings, account=ig, token=token, claimed=args.threads_user_id, lookup=args.lookup,
    )  # fmt: skip
    if link.note:
        print(f"note: {link.note}", file=sys.stderr)
    account = _store_link(engine, account.id, link, token)
    print(
        f"linked account {account.id} {account.name!r} to Threads user "
        f"{account.threads_user_id} ({link.source}) token {mask_token(account.threads_token)}"
    )
    return account


def _unlink(args: argparse.Namespace, engine: Engine) -> None:
    from models.db import session_scope
    from models.types import utcnow

    with session_scope(engine) as session:
        account = find_account(session, args)
        old = account.threads_user_id
        if old is not None:
            for name in THREADS_FIELDS:
                setattr(account, name, None)
            account.threads_state = "active"
            account.updated_at = utcnow()
            session.add(account)
    if old is None:
        print(f"account {account.id} {account.name!r} has no Threads profile: nothing to do")
    else:
        print(f"unlinked Threads user {old} from account {account.id} {account.name!r}")


def run_threads(args: argparse.Namespace, settings: Settings) -> int:
    engine = open_database(settings)
    try:
        if args.unlink:
            _unlink(args, engine)
            return 0
        account = _link(args, settings, engine)
        if not args.no_backfill:
            from archiver.threads_meta import run_backfill

            run_backfill(settings, engine, account)
    finally:
        engine.dispose()
    return 0


def run_backfill_command(args: argparse.Namespace, settings: Settings) -> int:
    engine = open_database(settings)
    try:
        account = _load(engine, args)
        if args.media_since is not None:
            from archiver.media_backfill import run_media_backfill

            run_media_backfill(settings, engine, account, args.media_since)
            return 0
        from archiver.threads_meta import run_backfill

        if account.threads_user_id is None or account.threads_token is None:
            msg = (
                f"account {account.name!r} has no Threads profile: link one with "
                "`archiver accounts threads`"
            )
            raise NotFoundError(msg)
        run_backfill(settings, engine, account)
    finally:
        engine.dispose()
    return 0
