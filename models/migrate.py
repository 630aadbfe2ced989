"""Alembic, driven from code so that `archiver db upgrade` works from an installed package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from core.errors import StoreUnavailable
from models.db import create_db_engine
from models.partitions import ensure_ahead
from models.types import utcnow

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at `url` up to `revision`; safe to run on every start."""
    try:
        command.upgrade(alembic_config(url), revision)
        if revision == "head":
            _partitions_ahead(url)
    except OperationalError as exc:
        msg = f"database unavailable: {exc.orig or exc}"
        raise StoreUnavailable(msg) from exc


def _partitions_ahead(url: str) -> None:
    """The months ahead exist from the start (the tick keeps them ahead afterwards)."""
    engine = create_db_engine(url, pool_size=1)
    try:
        ensure_ahead(engine, utcnow())
    finally:
        engine.dispose()


def pending(engine: Engine, url: str) -> bool:
    """True when the database is behind the newest migration."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() != head
