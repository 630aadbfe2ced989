"""Archive benchmark: the storage and the query times of a large archive on PostgreSQL.

Builds an archive (default: 1,000 accounts, 3 stories each a day for 33 days, 25 versions per
story plus a webhook version for one story in 3, each account's Threads profile polled 4 times
a day and one Threads post a day) through the write path's own functions
(bench/archive_write.py, checked against record_snapshot by tests/test_bench_archive.py),
VACUUM ANALYZEs it, then prints bytes per snapshot and per metric value, and each documented
view's and README query's median EXPLAIN ANALYZE time (planning + execution) over 3 runs after
a warm-up. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from archive_plan import Plan, Templates
from archive_queries import QUERY_GROUPS, measure_all, print_sizes, sample
from archive_shapes import capture_shapes
from archive_write import build
from sqlalchemy.engine import Engine

from models.db import create_db_engine
from models.migrate import upgrade
from models.views import VIEWS

PG_URL = os.environ.get(
    "BENCH_ARCHIVE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench_archive"
)


@dataclass(frozen=True)
class Options:
    plan: Plan
    url: str
    schema: str
    keep: bool
    drop: bool
    repeats: int
    queries: list[str]
    jit: str


def ensure_database(url: str, schema: str) -> None:
    """Create the benchmark's database if missing. A shared database (`test`, `postgres`) is
    used only with a schema of the benchmark's own: the archive's schema is dropped."""
    name = urlsplit(url).path.lstrip("/")
    if name in ("", "test", "postgres") and schema == "public":
        sys.exit(
            f"database {name!r} is shared: give --schema, or a database of the benchmark's own"
        )
    admin_url = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        found = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if found.first() is None:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def schema_url(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def refresh_views(engine: Engine) -> None:
    """Replace the archive's views with the code's (models.views), as a migration would, so
    that a view changed since the archive was built is measured without rebuilding it."""
    with engine.begin() as conn:
        for name in reversed(list(VIEWS)):
            conn.execute(sa.text(f"DROP VIEW IF EXISTS {name}"))
        for view in VIEWS.values():
            conn.execute(sa.text(view["postgresql"]))


def has_archive(engine: Engine) -> bool:
    with engine.connect() as conn:
        if conn.execute(sa.text("SELECT to_regclass('snapshot')")).scalar() is None:
            return False
        return bool(conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM snapshot)")).scalar())


def reset_schema(url: str, schema: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()


def drop_schema(url: str, schema: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


def fill(engine: Engine, plan: Plan) -> None:
    started = time.monotonic()
    templates = Templates.of(capture_shapes())
    every = max(1, plan.stories * plan.versions // 10)
    shown = [0]

    def progress(stored: int) -> None:
        if stored - shown[0] >= every:
            shown[0] = stored
            print(f"  {stored:,} snapshots stored, {time.monotonic() - started:.0f} s", flush=True)

    stored = build(engine, plan, templates, progress=progress)
    print(f"built {stored:,} snapshots in {time.monotonic() - started:.0f} s", flush=True)
    started = time.monotonic()
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("VACUUM ANALYZE"))
    print(f"VACUUM ANALYZE in {time.monotonic() - started:.0f} s", flush=True)


def run(opts: Options) -> int:
    ensure_database(opts.url, opts.schema)
    url = schema_url(opts.url, opts.schema)
    if opts.keep and _exists(url):
        print(f"reusing the archive in schema {opts.schema} (--keep), its views replaced")
        refresh_views(_engine(url))
    else:
        reset_schema(opts.url, opts.schema)
        upgrade(url)
        _describe(opts.plan)
        fill(_engine(url), opts.plan)
    if opts.jit != "server":
        url = f"{url}%20-cjit%3D{opts.jit}"
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            print(f"jit: {conn.execute(sa.text('SHOW jit')).scalar()} ({opts.jit})")
        print_sizes(engine)
        measure_all(engine, sample(engine), opts.repeats, opts.queries)
    finally:
        engine.dispose()
        if opts.drop:
            drop_schema(opts.url, opts.schema)
    return 0


def _engine(url: str) -> Engine:
    return create_db_engine(url, pool_size=1)


def _exists(url: str) -> bool:
    engine = _engine(url)
    try:
        return has_archive(engine)
    except sa.exc.ProgrammingError:
        return False
    finally:
        engine.dispose()


def _describe(plan: Plan) -> None:
    print(
        f"building: {plan.accounts:,} accounts x {plan.stories_per_day} stories a day x "
        f"{plan.days} days = {plan.stories:,} stories, {plan.versions} versions each "
        f"(+ a webhook version for 1 in {plan.webhook_every}); Threads: {plan.polls_per_day} "
        f"polls a day, {plan.posts_per_day} post a day x {plan.post_versions} captures",
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--stories-per-day", type=int, default=3)
    p.add_argument("--days", type=int, default=33, help="days of stories (default 33)")
    p.add_argument("--versions", type=int, default=25, help="API snapshots per story")
    p.add_argument("--postgres-url", default=PG_URL, help="a database of the benchmark's own")
    p.add_argument("--schema", default="public")
    p.add_argument("--keep", action="store_true", help="reuse the archive built before")
    p.add_argument("--drop", action="store_true", help="drop the schema at the end")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--queries", default=",".join(QUERY_GROUPS),
                   help=f"groups to time (default: all of {','.join(QUERY_GROUPS)})")  # fmt: skip
    p.add_argument("--jit", choices=("server", "on", "off"), default="server",
                   help="JIT for the queries (default: the server setting)")  # fmt: skip
    p.add_argument("--small", action="store_true", help="a quick run: 20 accounts, 3 days")
    args = p.parse_args(argv)
    if args.small:
        args.accounts, args.days = 20, 3
    # The newest stories are posted a day and an hour before now, so that every capture of
    # theirs (webhooks an hour after expiry) lies in the past and `now()` queries find them.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=26)
    plan = Plan(args.accounts, args.stories_per_day, args.days, args.versions, end)
    queries = args.queries.split(",")
    if not set(queries) <= set(QUERY_GROUPS):
        p.error(f"--queries: groups are {', '.join(QUERY_GROUPS)}")
    return Options(
        plan,
        args.postgres_url,
        args.schema,
        args.keep,
        args.drop,
        args.repeats,
        queries,
        args.jit,
    )


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
