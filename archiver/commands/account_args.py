"""The arguments every `archiver accounts` command shares: how an account is named on the
command line (--name or --id), and finding it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from core.errors import NotFoundError

if TYPE_CHECKING:
    from sqlmodel import Session

    from models.accounts import Account


def text(value: str) -> str:
    """argparse type: a non-empty value without spaces (ids, names, tokens).

    The message never repeats the value: it may be a token.
    """
    if not value.strip() or value != value.strip():
        msg = "must be non-empty, without leading or trailing spaces"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_which(parser: argparse.ArgumentParser) -> None:
    """--name or --id: how every command on one account names it."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--name", type=text, help="the account's name")
    which.add_argument("--id", type=int, help="the account's id (see `accounts list`)")


def find_account(session: Session, args: argparse.Namespace) -> Account:
    from sqlmodel import select

    from models.accounts import Account

    if args.id is not None:
        found = session.get(Account, args.id)
        missing = f"no account with id {args.id}"
    else:
        found = session.exec(select(Account).where(Account.name == args.name)).first()
        missing = f"no account named {args.name!r}"
    if found is None:
        raise NotFoundError(missing)
    return found
