"""Alembic environment: online migrations against the URL the caller configured."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from models.db import create_db_engine
from models.partitions import include_name
from models.tables import metadata

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_db_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                compare_type=True,
                render_as_batch=connection.dialect.name == "sqlite",
                include_name=include_name,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:  # a failed migration must not leave its connection open
        engine.dispose()


if context.is_offline_mode():
    msg = "offline migrations are not supported; run `archiver db upgrade`"
    raise SystemExit(msg)
run_migrations_online()
_ = sa  # env modules are imported by path; keep sqlalchemy importable for revisions
