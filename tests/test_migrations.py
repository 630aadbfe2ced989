"""The migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from models.migrate import pending, upgrade
from models.partitions import include_name
from models.tables import metadata
from models.views import METRIC_HISTORY_COLUMNS


def test_models_and_migrations_agree(engine: Engine) -> None:
    """Autogenerate finds nothing to change after `upgrade head`."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": include_name})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_upgrade_is_idempotent_and_current(engine: Engine, database_url: str) -> None:
    """Running upgrade again changes nothing and leaves nothing pending."""
    upgrade(database_url)
    assert not pending(engine, database_url)


def test_metric_history_has_the_documented_columns(engine: Engine) -> None:
    """The public view's columns are exactly PRODUCT.md's, in order."""
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT * FROM metric_history WHERE 1 = 0"))
        assert tuple(result.keys()) == METRIC_HISTORY_COLUMNS


def test_upgrade_from_empty_sqlite(tmp_path: object) -> None:
    """A brand-new SQLite file is migrated from nothing."""
    url = f"sqlite:///{tmp_path}/fresh.db"
    upgrade(url)
    engine = sa.create_engine(url)
    names = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert {
        "account",
        "webhook_delivery",
        "media",
        "snapshot",
        "snapshot_raw",
        "metric_key",
    } <= names
