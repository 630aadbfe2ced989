"""`archiver db upgrade`: apply the migrations shipped inside the package."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from archiver.commands import add_command, describe_database

if TYPE_CHECKING:
    from archiver.commands import SubParsers
    from core.config import Settings


def register(subparsers: SubParsers) -> None:
    db = add_command(subparsers, "db", help_text="manage the database schema")
    inner = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    upgrade = add_command(
        inner,
        "upgrade",
        help_text="apply migrations up to the newest (safe to repeat)",
        description="Create or update the tables and views at DATABASE_URL. "
        "`archiver run` does this by itself; `serve`, `worker` and `accounts` expect it done.",
    )
    upgrade.set_defaults(handler=run_upgrade)


def current_revision(url: str) -> str | None:
    """The schema revision recorded in the database; None for an empty one."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.exc import OperationalError

    from core.errors import StoreUnavailable
    from models.db import create_db_engine

    engine = create_db_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        msg = f"database unavailable: {exc.orig or exc}"
        raise StoreUnavailable(msg) from exc
    finally:
        engine.dispose()


def apply_migrations(url: str) -> str:
    """Upgrade `url` to the newest revision; return one line saying what changed."""
    from models.migrate import upgrade

    before = current_revision(url)
    upgrade(url)
    after = current_revision(url)
    where = describe_database(url)
    if before == after:
        return f"{where}: schema already at revision {after}, nothing to do"
    return f"{where}: schema upgraded from {before or 'empty'} to revision {after}"


def run_upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    print(apply_migrations(settings.database_url))
    return 0
