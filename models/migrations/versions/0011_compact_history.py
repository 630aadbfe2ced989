"""compact history: BIGINT ids, a snapshot's values stored together (metric_key), raw in its
own table, snapshot and snapshot_raw partitioned by month on PostgreSQL, views version 2

Every row is carried over: each snapshot keeps its id, and its metric_value rows become its
arrays in their id order (the order the views break ties by); its raw answer moves to
snapshot_raw without Meta's constant titles and descriptions, as new captures store it. The
old tables are dropped.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 05:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from models.partitions import create_month, months, next_month
from models.types import pack_json
from models.views import VIEWS

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "id, account_id, platform, subject_type, subject_id, kind, version, slot, captured_at,"
    " source, api_version, delivery_id"
)

_PG_SNAPSHOT = """
CREATE TABLE snapshot (
    id BIGINT NOT NULL DEFAULT nextval('snapshot_id_seq'),
    account_id INTEGER NOT NULL,
    platform VARCHAR(16) NOT NULL,
    subject_type VARCHAR(32) NOT NULL,
    subject_id VARCHAR(64) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    version INTEGER NOT NULL,
    slot VARCHAR(64) NOT NULL,
    captured_at TIMESTAMP WITH TIME ZONE NOT NULL,
    source VARCHAR(16) NOT NULL,
    api_version VARCHAR(16),
    delivery_id BIGINT,
    metric_keys INTEGER[] NOT NULL,
    metric_values FLOAT[] NOT NULL,
    end_times TIMESTAMP WITH TIME ZONE[],
    flags TEXT[],
    CONSTRAINT snapshot_pkey PRIMARY KEY (id, captured_at)
) PARTITION BY RANGE (captured_at)
"""

_PG_RAW = """
CREATE TABLE snapshot_raw (
    snapshot_id BIGINT NOT NULL,
    captured_at TIMESTAMP WITH TIME ZONE NOT NULL,
    body BYTEA NOT NULL,
    CONSTRAINT snapshot_raw_pkey PRIMARY KEY (snapshot_id, captured_at)
) PARTITION BY RANGE (captured_at)
"""

# A snapshot's metric_value rows as its arrays, in id order. {agg} spells an ordered
# aggregate per dialect; end_times and flags stay null when the snapshot has none.
_PG_VALUES = """
SELECT m.snapshot_id,
       array_agg(k.id ORDER BY m.id) AS metric_keys,
       array_agg(m.value::float8 ORDER BY m.id) AS metric_values,
       CASE WHEN count(m.end_time) > 0 THEN array_agg(m.end_time ORDER BY m.id) END
           AS end_times,
       CASE WHEN count(m.flag) > 0 THEN array_agg(m.flag::text ORDER BY m.id) END AS flags
FROM metric_value m
JOIN metric_key k ON k.metric = m.metric AND k.breakdown = COALESCE(m.breakdown, '')
                 AND k.dimension = COALESCE(m.dimension, '')
GROUP BY m.snapshot_id
"""

_SQLITE_VALUES = """
SELECT snapshot_id,
       json_group_array(key_id) AS metric_keys,
       json_group_array(value) AS metric_values,
       CASE WHEN count(end_time) > 0 THEN json_group_array(end_time) END AS end_times,
       CASE WHEN count(flag) > 0 THEN json_group_array(flag) END AS flags
FROM (
    SELECT m.snapshot_id, k.id AS key_id, m.value, m.end_time, m.flag
    FROM metric_value m
    JOIN metric_key k ON k.metric = m.metric AND k.breakdown = COALESCE(m.breakdown, '')
                     AND k.dimension = COALESCE(m.dimension, '')
    ORDER BY m.snapshot_id, m.id
)
GROUP BY snapshot_id
"""

_COPY = """
INSERT INTO {target} ({columns}, metric_keys, metric_values, end_times, flags)
SELECT {s_columns}, COALESCE(v.metric_keys, {empty}), COALESCE(v.metric_values, {empty}),
       v.end_times, v.flags
FROM snapshot_old s
LEFT JOIN ({values}) v ON v.snapshot_id = s.id
"""

# Subjects only a webhook or an older version saw get the media row the views start from: a
# story as the webhook path creates one today ('live', nothing scheduled), a post as one whose
# schedule is over ('done').
_MEDIA_FOR_ORPHANS = """
INSERT INTO media (account_id, platform, subject_type, media_id, discovered_at, capture_state)
SELECT MIN(s.account_id), s.platform, MIN(s.subject_type), s.subject_id, MIN(s.captured_at),
       CASE WHEN MIN(s.subject_type) = 'story' THEN 'live' ELSE 'done' END
FROM snapshot s
WHERE s.subject_type IN ('story', 'threads_post', 'feed', 'reel')
  AND NOT EXISTS (
      SELECT 1 FROM media md WHERE md.platform = s.platform AND md.media_id = s.subject_id
  )
GROUP BY s.platform, s.subject_id
"""


_RAW_BATCH = 1000


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    _create_metric_key()
    if dialect == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()
    for view in VIEWS.values():
        op.execute(view[dialect])


def _create_metric_key() -> None:
    op.create_table(
        "metric_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("breakdown", sa.String(length=64), server_default="", nullable=False),
        sa.Column("dimension", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("metric", "breakdown", "dimension", name="uq_metric_key"),
    )
    op.execute(
        "INSERT INTO metric_key (metric, breakdown, dimension)"
        " SELECT DISTINCT metric, COALESCE(breakdown, ''), COALESCE(dimension, '')"
        " FROM metric_value"
    )


def _upgrade_postgresql() -> None:
    op.execute(_MEDIA_FOR_ORPHANS)
    op.execute("ALTER TABLE snapshot RENAME TO snapshot_old")
    op.execute("ALTER INDEX snapshot_pkey RENAME TO snapshot_old_pkey")
    op.execute("ALTER SEQUENCE snapshot_id_seq AS BIGINT")
    op.execute("ALTER SEQUENCE snapshot_id_seq OWNED BY NONE")
    op.execute(_PG_SNAPSHOT)
    op.execute(_PG_RAW)
    op.execute("CREATE INDEX ix_snapshot_subject ON snapshot (subject_id, kind, version)")
    op.execute("CREATE INDEX ix_snapshot_account_captured ON snapshot (account_id, captured_at)")
    op.execute("CREATE INDEX ix_snapshot_captured ON snapshot USING brin (captured_at)")
    _create_partitions()
    _copy_values(empty="'{}'", values=_PG_VALUES)
    _copy_raw("raw IS NOT NULL AND jsonb_typeof(raw) <> 'null'")
    op.execute("DROP TABLE metric_value")
    op.execute("DROP TABLE snapshot_old")
    op.execute("ALTER SEQUENCE snapshot_id_seq OWNED BY snapshot.id")
    for table in ("media", "webhook_delivery", "notice"):
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE BIGINT")
        op.execute(f"ALTER SEQUENCE {table}_id_seq AS BIGINT")
    op.execute("ALTER TABLE media ALTER COLUMN final_snapshot_id TYPE BIGINT")
    _media_indexes()


def _create_partitions() -> None:
    """Months from the oldest snapshot to two months ahead, or to the newest snapshot when
    that is later (a capture by a clock set ahead still needs its month)."""
    conn = op.get_bind()
    oldest, newest = conn.execute(
        sa.text("SELECT MIN(captured_at), MAX(captured_at) FROM snapshot_old")
    ).one()
    now = datetime.now(UTC)
    end = next_month(next_month(now.replace(day=1)))
    for month in months(oldest or now, max(end, newest or end)):
        create_month(conn, month)


def _copy_values(*, empty: str, values: str) -> None:
    """Every old snapshot into the new table, its metric_value rows as its arrays."""
    op.execute(
        _COPY.format(
            target="snapshot",
            columns=_COLUMNS,
            s_columns=_prefixed(_COLUMNS),
            empty=empty,
            values=values,
        )
    )


def _prefixed(columns: str) -> str:
    return ", ".join(f"s.{name.strip()}" for name in columns.split(","))


def _upgrade_sqlite() -> None:
    op.execute(_MEDIA_FOR_ORPHANS)
    op.execute("ALTER TABLE snapshot RENAME TO snapshot_old")
    op.create_table(
        "snapshot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("slot", sa.String(length=64), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("api_version", sa.String(length=16), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("metric_keys", sa.JSON(), nullable=False),
        sa.Column("metric_values", sa.JSON(), nullable=False),
        sa.Column("end_times", sa.JSON(), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "snapshot_raw",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("snapshot_id"),
    )
    _copy_values(empty="'[]'", values=_SQLITE_VALUES)
    _copy_raw("raw IS NOT NULL AND raw <> 'null'")
    op.execute("DROP TABLE metric_value")
    op.execute("DROP TABLE snapshot_old")
    op.create_index("ix_snapshot_subject", "snapshot", ["subject_id", "kind", "version"])
    op.create_index("ix_snapshot_account_captured", "snapshot", ["account_id", "captured_at"])
    op.create_index("ix_snapshot_captured", "snapshot", ["captured_at"])
    _media_indexes()


def _copy_raw(kept: str) -> None:
    """The raw answers `kept` selects, compacted and packed as the write path packs them
    (models.types.pack_json), a batch at a time in id order."""
    conn = op.get_bind()
    select = sa.text(
        f"SELECT id, captured_at, raw FROM snapshot_old WHERE {kept} AND id > :after"
        " ORDER BY id LIMIT :n"
    ).columns(sa.column("id"), sa.column("captured_at"), sa.column("raw", sa.JSON))
    insert = sa.text(
        "INSERT INTO snapshot_raw (snapshot_id, captured_at, body) VALUES (:id, :at, :body)"
    )
    after = 0
    while batch := conn.execute(select, {"after": after, "n": _RAW_BATCH}).all():
        rows = [{"id": i, "at": at, "body": pack_json(raw)} for i, at, raw in batch]
        conn.execute(insert, rows)
        after = batch[-1][0]


def _media_indexes() -> None:
    op.create_index("ix_media_account_posted", "media", ["account_id", "posted_at"])
    op.create_index("ix_media_subject_posted", "media", ["subject_type", "posted_at"])


def downgrade() -> None:
    msg = "0011 folds metric_value into snapshot arrays; restore a backup to go back"
    raise NotImplementedError(msg)
