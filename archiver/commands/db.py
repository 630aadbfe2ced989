"""`archiver db upgrade`: apply the migrations shipped inside the package; `archiver db raw`:
print the raw answers kept with a snapshot (stored compressed, so SQL sees only bytes)."""

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
    raw = add_command(
        inner,
        "raw",
        help_text="print the raw answers Meta gave for a snapshot, as JSON",
        description="Meta's answers behind one snapshot (metric_history's snapshot_id), as "
        "stored: scrubbed of tokens, without Meta's constant titles and descriptions.",
    )
    raw.add_argument("snapshot_id", type=int, help="the snapshot's id")
    raw.set_defaults(handler=run_raw)


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


def run_raw(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from archiver.commands import open_database
    from core.errors import NotFoundError
    from models.snapshots import raw_body

    engine = open_database(settings)
    try:
        with engine.connect() as conn:
            body = raw_body(conn, args.snapshot_id)
    finally:
        engine.dispose()
    if body is None:
        msg = f"no raw answers kept for snapshot {args.snapshot_id} (none, or pruned)"
        raise NotFoundError(msg)
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return 0
