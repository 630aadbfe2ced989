"""One module per command group, each with `register(subparsers)`; shared helpers live here
(opening the database; naming an account by --name or --id and finding it).

Command modules import the heavy parts (SQLAlchemy, receiver, workers) inside their handlers,
so `archiver --help` works, and fast, whatever is installed or broken.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError, NotFoundError, StoreUnavailable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from core.config import Settings
    from models.accounts import Account

    Handler = Callable[[argparse.Namespace, Settings], int]
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

UPGRADE_FIRST = "run `archiver db upgrade` first"


def add_command(
    subparsers: SubParsers, name: str, *, help_text: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand whose --help shows its own description (or the one-line help)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=help_text, description=description or help_text
    )
    return parser


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other backends and in-memory databases)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).resolve()


def describe_database(url: str) -> str:
    """Where the data lives, fit to print: a file path, or the URL without its password."""
    from sqlalchemy.engine import make_url

    path = sqlite_path(url)
    if path is not None:
        return f"SQLite file {path}"
    return make_url(url).render_as_string(hide_password=True)


def open_database(settings: Settings) -> Engine:
    """An engine on an up-to-date schema, or one line telling the operator to migrate."""
    from sqlalchemy.exc import SQLAlchemyError

    from models.db import create_db_engine, ping
    from models.migrate import pending

    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        msg = f"database file {path} does not exist: {UPGRADE_FIRST}"
        raise ConfigError(msg)
    engine = create_db_engine(settings.database_url, pool_size=2, token_key=settings.token_key)
    try:
        ping(engine)
        behind = pending(engine, settings.database_url)
    except SQLAlchemyError as exc:
        engine.dispose()
        msg = f"database unavailable: {exc.__class__.__name__}"
        raise StoreUnavailable(msg) from exc
    except BaseException:
        engine.dispose()
        raise
    if behind:
        engine.dispose()
        msg = f"the database schema is missing or out of date: {UPGRADE_FIRST}"
        raise ConfigError(msg)
    return engine


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
