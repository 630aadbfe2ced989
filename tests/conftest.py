"""Fixtures: every storage test runs on SQLite and (when reachable; in CI always) PostgreSQL,
against the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config import Settings, load_settings
from models.db import create_db_engine
from models.migrate import upgrade
from models.tables import metadata

pytest_plugins = ["tests.metasim_fixtures"]

PG_BASE_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _redis_url_of_this_process() -> str:
    """TEST_REDIS_URL (database 9 by default), one database further per pytest-xdist worker
    (`gw1` uses 10), since tests flush their database."""
    url = urlsplit(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return urlunsplit(url._replace(path=f"/{int(url.path.strip('/') or 0) + worker}"))


REDIS_URL = _redis_url_of_this_process()
REQUIRE_POSTGRES = os.environ.get("ARCHIVER_REQUIRE_POSTGRES") == "1"

APP_SECRET = "test-app-secret-0123456789"
VERIFY_TOKEN = "test-verify-token"
THREADS_SECRET = "test-threads-secret-0123456789"


def _postgres_reachable() -> bool:
    engine = sa.create_engine(PG_BASE_URL, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str | None]:
    """One migrated schema for the whole run; tests truncate it rather than rebuild it."""
    if not _postgres_reachable():
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL required but unreachable at {PG_BASE_URL}")
        yield None
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    upgrade(url)
    yield url
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies, so migrations run once per session."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate_all(url: str) -> None:
    engine = create_db_engine(url, pool_size=1)
    names = ", ".join(table.name for table in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    pg_schema_url: str | None,
) -> str:
    """A migrated, empty database: a fresh SQLite file, or the session's PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path / "archiver.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    if pg_schema_url is None:
        pytest.skip("PostgreSQL not reachable")
    _truncate_all(pg_schema_url)
    return pg_schema_url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """For tests whose subject does not depend on the backend."""
    path = tmp_path / "archiver.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_schema_url: str | None) -> str:
    """The session's PostgreSQL schema, emptied, for tests of PostgreSQL deployments only."""
    if pg_schema_url is None:
        pytest.skip("PostgreSQL not reachable")
    _truncate_all(pg_schema_url)
    return pg_schema_url


@pytest.fixture
def pg(pg_url: str) -> Iterator[Engine]:
    engine = create_db_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The shared Redis, on a database of the suite's own, emptied before each test."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


def make_settings(database_url: str, redis_url: str | None, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "_env_file": None,
        "database_url": database_url,
        "redis_url": redis_url,
        "meta_app_secret": APP_SECRET,
        "meta_verify_token": VERIFY_TOKEN,
        "threads_app_secret": THREADS_SECRET,
        "relay_interval_seconds": 0.05,
        "worker_metrics_port": 0,  # tests that serve worker metrics choose a free port
        # Off unless a test is about them (tests/test_account_insights.py): every worker test
        # would otherwise spend calls and snapshots on each account's daily insights.
        "ig_account_insights": False,
    }
    base.update(overrides)
    return load_settings(**base)


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url)
