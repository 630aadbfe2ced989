"""`archiver accounts add | update | list | remove`: the accounts whose insights are captured.
(`accounts threads | backfill`, the Threads side after the fact, live in threads_link.)

Tokens are secrets: they are read from standard input, a file or the environment as well as
from the command line (archiver.token_input), stored as given and only ever shown through
`mask_token`, in output and in errors alike.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from archiver.commands import (
    add_command,
    add_which,
    find_account,
    keys,
    open_database,
    text,
    threads_link,
)
from archiver.token_input import (
    IG,
    THREADS,
    TokenSource,
    add_token_options,
    given,
    read_token,
    supplied,
)
from core.errors import ConfigError, ConflictError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from archiver.commands import SubParsers
    from archiver.meta_checks import Checked
    from core.config import Settings
    from models.accounts import Account
    from store.access_renewal import NewAccess

LOGINS = ("facebook", "instagram")


def register(subparsers: SubParsers) -> None:
    accounts = add_command(
        subparsers, "accounts", help_text="add, update, list, remove; link Threads; backfill"
    )
    inner = accounts.add_subparsers(dest="accounts_command", metavar="SUBCOMMAND", required=True)
    _register_add(inner)
    _register_update(inner)
    listing = add_command(inner, "list", help_text="show the registered accounts (tokens masked)")
    listing.set_defaults(handler=run_list)
    remove = add_command(
        inner,
        "remove",
        help_text="remove an account",
        description="Remove an account. Its snapshots go with it (the database cascades), so "
        "an account with snapshots is only removed with --delete-snapshots.",
    )
    add_which(remove)
    remove.add_argument(
        "--delete-snapshots", action="store_true", help="confirm that its snapshots go too"
    )
    remove.set_defaults(handler=run_remove)
    threads_link.register(inner)
    keys.register(inner)


def _register_add(inner: SubParsers) -> None:
    add = add_command(
        inner,
        "add",
        help_text="register an account",
        description="Register an Instagram professional account and, optionally, the Threads "
        "profile that belongs to it (--threads-user-id and a Threads token, or neither); its "
        "views history is then backfilled from the Threads API, unless --no-backfill. Each "
        "token comes from one of: its option (`-` reads standard input: with both, the "
        "Instagram token is the first line and the Threads token the second), its "
        "--*-token-file, or ARCHIVER_IG_TOKEN / ARCHIVER_THREADS_TOKEN.",
    )
    add.add_argument("--name", required=True, type=text, help="a unique name of your choice")
    add.add_argument(
        "--ig-user-id",
        required=True,
        type=text,
        metavar="ID",
        help="the IG professional account id: webhook entry.id (Instagram Login: /me user_id)",
    )
    add_token_options(add, IG)
    add.add_argument("--login", choices=LOGINS, default="facebook", help="default: facebook")
    add.add_argument("--threads-user-id", type=text, metavar="ID", help="Threads user id")
    add_token_options(add, THREADS)
    add.add_argument("--no-backfill", action="store_true", help="skip the Threads views backfill")
    _add_no_check(add)
    add.set_defaults(handler=run_add, check=check_add, parser=add)


def _add_no_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="do not ask Meta whether the tokens work and own the ids (offline use)",
    )


def _register_update(inner: SubParsers) -> None:
    update = add_command(
        inner,
        "update",
        help_text="replace an account's token(s); capture resumes",
        description="Replace the Instagram and/or Threads token of an account, e.g. after "
        "it lapsed: the side whose token is replaced leaves `reauth_required`, forgets its "
        "failures and is polled on the next tick. Tokens come from the same sources as for "
        "`accounts add`; each is checked against Meta first unless --no-check.",
    )
    add_which(update)
    add_token_options(update, IG)
    update.add_argument("--login", choices=LOGINS, help="the Instagram token's login type")
    add_token_options(update, THREADS)
    _add_no_check(update)
    update.set_defaults(handler=run_update, parser=update)


def check_add(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of options, if anything (argparse cannot say)."""
    if args.threads_user_id is None and given(args, THREADS):
        return "a Threads token goes with --threads-user-id: give both or neither"
    return None


def _refuse_duplicate(session: Session, args: argparse.Namespace) -> None:
    from sqlmodel import or_, select

    from models.accounts import Account

    stmt = select(Account).where(
        or_(Account.name == args.name, Account.ig_user_id == args.ig_user_id)
    )
    existing = session.exec(stmt).first()
    if existing is None:
        return
    if existing.name == args.name:
        msg = f"an account named {args.name!r} exists already (id {existing.id})"
    else:
        msg = f"IG user id {args.ig_user_id} is registered already as {existing.name!r}"
    raise ConflictError(msg)


def run_add(args: argparse.Namespace, settings: Settings) -> int:
    from models.accounts import Account
    from models.types import utcnow

    linked = args.threads_user_id is not None
    ig_token = read_token(args, IG, settings)  # first: the first line of standard input
    account = Account(
        name=args.name,
        ig_user_id=args.ig_user_id,
        ig_token=ig_token,
        login=args.login,
        threads_user_id=args.threads_user_id,
        threads_token=read_token(args, THREADS, settings) if linked else None,
        threads_link_source="operator" if linked else None,
        threads_linked_at=utcnow() if linked else None,
    )
    checked = None
    if not args.no_check:
        from archiver.meta_checks import check_account

        checked = check_account(settings, account)
    engine = open_database(settings)
    try:
        _insert(engine, account, args)
        _print_added(account)
        said = _keep_token_info(engine, account, checked)
        if said:
            print(said, flush=True)
        if linked and not args.no_backfill:
            from archiver.threads_meta import run_backfill

            run_backfill(settings, engine, account)
    finally:
        engine.dispose()
    return 0


def _insert(engine: Engine, account: Account, args: argparse.Namespace) -> None:
    from sqlalchemy.exc import IntegrityError

    from models.db import session_scope

    try:
        with session_scope(engine) as session:
            _refuse_duplicate(session, args)
            session.add(account)
            session.flush()
    except IntegrityError:  # a concurrent add won the race; its message would carry the token
        msg = f"an account named {args.name!r} or with IG user id {args.ig_user_id} exists"
        raise ConflictError(msg) from None


def _print_added(account: Account) -> None:
    from models.accounts import mask_token

    threads = f", threads {account.threads_user_id} token {mask_token(account.threads_token)}"
    print(
        f"added account {account.id} {account.name!r}: IG {account.ig_user_id} "
        f"({account.login} login) token {mask_token(account.ig_token)}"
        + (threads if account.threads_user_id is not None else ""),
        flush=True,
    )


def _keep_token_info(engine: Engine, account: Account, checked: Checked | None) -> str | None:
    """Store what debug_token said of the Facebook Login token; the line that says it."""
    if checked is not None and checked.note is not None:
        print(f"account {account.name!r}: {checked.note}", file=sys.stderr, flush=True)
    if checked is None or checked.token_info is None or account.id is None:
        return None
    from archiver.meta_checks import describe
    from store.token_renewal import store_token_check

    info = checked.token_info
    store_token_check(
        engine,
        account_id=account.id,
        expires_at=info.expires_at,
        data_access_expires_at=info.data_access_expires_at,
    )
    return f"account {account.name!r}: the Instagram token {describe(info)}"


def _read_update(args: argparse.Namespace, settings: Settings) -> NewAccess:
    """The tokens given (the Instagram one first: the first line of standard input)."""
    from store.access_renewal import NewAccess

    # The environment supplies a token only when the command line names none: a token left in
    # .env must not be rewritten by an update that is about the other one.
    on_line = given(args, IG) or given(args, THREADS)

    def wanted(source: TokenSource) -> bool:
        return given(args, source) if on_line else supplied(args, source, settings)

    ig_token = read_token(args, IG, settings) if wanted(IG) else None
    threads = read_token(args, THREADS, settings) if wanted(THREADS) else None
    if ig_token is None and threads is None and args.login is None:
        msg = (
            "nothing to update: give --ig-token or --threads-token (`-` for standard input), "
            "their --*-token-file, ARCHIVER_IG_TOKEN / ARCHIVER_THREADS_TOKEN, or --login "
            f"(see `{args.parser.prog} --help`)"
        )
        raise ConfigError(msg)
    return NewAccess(ig_token, args.login, threads)


def run_update(args: argparse.Namespace, settings: Settings) -> int:
    from models.accounts import mask_token
    from models.db import session_scope
    from store.access_renewal import renew_access

    access = _read_update(args, settings)
    engine = open_database(settings)
    try:
        with session_scope(engine) as session:
            account = find_account(session, args)
        assert account.id is not None
        if access.threads_token is not None and account.threads_user_id is None:
            msg = (
                f"account {account.name!r} has no Threads profile: link one with "
                "`archiver accounts threads`"
            )
            raise ConfigError(msg)
        checked = None
        if not args.no_check:
            from archiver.meta_checks import check_account

            checked = check_account(settings, account, access)
        if not renew_access(engine, account_id=account.id, access=access):
            msg = f"account {account.name!r} was removed meanwhile"
            raise ConflictError(msg)
        said = _keep_token_info(engine, account, checked)
    finally:
        engine.dispose()
    parts = [f"IG token {mask_token(access.ig_token)}"] if access.ig_token else []
    parts += [f"{access.login} login"] if access.login else []
    parts += [f"Threads token {mask_token(access.threads_token)}"] if access.threads_token else []
    how = "not checked (--no-check)" if args.no_check else "checked with Meta"
    print(
        f"updated account {account.id} {account.name!r}: {', '.join(parts)} ({how}); "
        "re-authorisation cleared, polls due now" + (f"\n{said}" if said else ""),
        flush=True,
    )
    return 0


HEADERS = ("ID", "NAME", "IG USER ID", "LOGIN", "STATE", "IG TOKEN", "THREADS ID", "THREADS TOKEN")


def account_row(account: Account) -> tuple[str, ...]:
    from models.accounts import mask_token

    return (
        str(account.id),
        account.name,
        account.ig_user_id,
        account.login,
        account.state,
        mask_token(account.ig_token),
        account.threads_user_id or "-",
        mask_token(account.threads_token),
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, wide enough for the longest cell."""
    table = (headers, *rows)
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def run_list(_args: argparse.Namespace, settings: Settings) -> int:
    from sqlmodel import select

    from models.accounts import Account
    from models.db import session_scope

    engine = open_database(settings)
    try:
        with session_scope(engine) as session:
            accounts = session.exec(select(Account).order_by(Account.id)).all()  # type: ignore[arg-type]
            rows = [account_row(account) for account in accounts]
    finally:
        engine.dispose()
    if not rows:
        print("no accounts yet: add one with `archiver accounts add`")
        return 0
    print(format_table(HEADERS, rows))
    return 0


def run_remove(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import func
    from sqlmodel import select

    from models.db import session_scope
    from models.snapshots import Snapshot, delete_snapshots

    engine = open_database(settings)
    try:
        with session_scope(engine) as session:
            account = find_account(session, args)
            count_stmt = select(func.count()).where(Snapshot.account_id == account.id)
            snapshots = int(session.exec(count_stmt).one())
            if snapshots and not args.delete_snapshots:
                msg = (
                    f"account {account.name!r} has {snapshots} snapshot(s) that would be "
                    "deleted with it; pass --delete-snapshots to confirm"
                )
                raise ConflictError(msg)
            delete_snapshots(session, account.id)
            session.delete(account)
    finally:
        engine.dispose()
    print(f"removed account {account.id} {account.name!r} and {snapshots} snapshot(s)")
    return 0
