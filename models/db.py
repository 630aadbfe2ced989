"""Engines and sessions for SQLite (WAL, one writer at a time) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from core.crypto import TokenCipher, attach_cipher
from core.errors import StoreUnavailable


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; busy_timeout makes writers queue
    # instead of failing at once; foreign keys are off by default in SQLite.
    # isolation_level=None hands BEGIN to us (see _sqlite_begin): pysqlite's own
    # handling breaks SAVEPOINT.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    # BEGIN IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
    # instead of one failing with "database is locked" when it upgrades a read lock.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str, *, pool_size: int = 5, token_key: str | None = None) -> Engine:
    """One engine per process; PostgreSQL connections fail fast so callers can answer 503.

    `token_key` (TOKEN_ENCRYPTION_KEY) makes this engine encrypt and decrypt access tokens.
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = sa.create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            pool_timeout=5,
            connect_args={"connect_timeout": 3},
        )
    attach_cipher(engine.dialect, TokenCipher(token_key) if token_key else None)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success, rolls back on error, and names an outage as such."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            msg = f"database unavailable: {exc.orig or exc}"
            raise StoreUnavailable(msg) from exc
        except BaseException:
            session.rollback()
            raise


def ping(engine: Engine) -> None:
    """Raise StoreUnavailable unless a trivial query round-trips."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except OperationalError as exc:
        msg = f"database unavailable: {exc.orig or exc}"
        raise StoreUnavailable(msg) from exc
