"""Migration benchmark: how long migration 0011 takes to fold an existing archive's
metric_value rows into its snapshots, on PostgreSQL.

Builds an archive at revision 0010 (stories of 8 versions, 16 values each, raw answers with
Meta's titles and descriptions) in a schema of its own, times `upgrade` to the newest
revision, prints the sizes before and after, and drops the schema. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import sqlalchemy as sa

from models.migrate import upgrade

PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PER = 16  # values per snapshot
VERSIONS = 8

FILL = """
INSERT INTO account (id, name, ig_user_id, ig_token, login, state, created_at, updated_at)
SELECT i, 'a' || i, 'ig' || i, 'enc', 'facebook', 'active', now(), now()
FROM generate_series(1, 10) i;
INSERT INTO media (account_id, platform, subject_type, media_id, posted_at, expires_at,
                   discovered_at, capture_state)
SELECT 1 + i % 10, 'instagram', 'story', 'st' || i,
       timestamptz '2026-06-01' + i * interval '1 hour',
       timestamptz '2026-06-02' + i * interval '1 hour', now(), 'final_captured'
FROM generate_series(0, :stories - 1) i;
INSERT INTO snapshot (id, account_id, platform, subject_type, subject_id, kind, version, slot,
                      captured_at, source, raw)
SELECT n, 1 + (n / 8) % 10, 'instagram', 'story', 'st' || (n / 8), 'insights', n % 8 + 1,
       's' || n % 8,
       timestamptz '2026-06-01' + (n / 8) * interval '1 hour' + (n % 8) * interval '3 hour', 'api',
       (SELECT jsonb_build_object('data', jsonb_agg(jsonb_build_object(
            'name', 'm' || j, 'period', 'lifetime',
            'values', jsonb_build_array(jsonb_build_object('value', j)),
            'title', 'Title of metric ' || j,
            'description', 'A long constant description of what metric ' || j || ' counts.',
            'id', 'st' || (n / 8) || '/insights/m' || j || '/lifetime')))
        FROM generate_series(1, 16) j)
FROM generate_series(0, :snapshots - 1) n;
INSERT INTO metric_value (snapshot_id, metric, breakdown, dimension, end_time, value, flag)
SELECT n, CASE WHEN j > 12 THEN 'navigation' ELSE 'm' || j END,
       CASE WHEN j > 12 THEN 'story_navigation_action_type' END,
       CASE WHEN j > 12 THEN 'd' || j END, NULL, (n * j) % 1000, NULL
FROM generate_series(0, :snapshots - 1) n, generate_series(1, 16) j;
SELECT setval('snapshot_id_seq', :snapshots);
ANALYZE
"""

SIZE = (
    "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c"
    " WHERE c.relkind = 'r' AND c.relnamespace = to_regnamespace(current_schema())"
    " AND (c.relname LIKE 'snapshot%' OR c.relname = 'metric_value')"
)


def fill(url: str, values: int) -> None:
    snapshots = values // PER
    params = {"snapshots": snapshots, "stories": snapshots // VERSIONS}
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in FILL.split(";\n"):
            conn.execute(sa.text(statement), params)
        size = conn.execute(sa.text(SIZE)).scalar()
    print(f"0010 archive: {values:,} values, {snapshots:,} snapshots, {size}")
    engine.dispose()


def measure(base_url: str, values: int) -> None:
    schema = f"bench_migration_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = f"{base_url}?options=-csearch_path%3D{schema}"
    try:
        upgrade(url, "0010")
        fill(url, values)
        started = time.monotonic()
        upgrade(url)
        seconds = time.monotonic() - started
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            size = conn.execute(sa.text(SIZE)).scalar()
        engine.dispose()
        print(f"upgrade to head: {seconds:.1f} s ({values / seconds:,.0f} values/s), after: {size}")
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, nargs="+", default=[200_000, 2_000_000],
                        help="metric_value rows of each archive to migrate")  # fmt: skip
    parser.add_argument("--postgres-url", default=PG_URL)
    args = parser.parse_args()
    for values in args.values:
        measure(args.postgres_url, values)


if __name__ == "__main__":
    main()
