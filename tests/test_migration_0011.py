"""Migration 0011 carries an existing archive to the compact layout without losing a row, on
both backends: every snapshot keeps its id and values, every view the same rows."""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from core.errors import StoreUnavailable
from models.db import create_db_engine
from models.migrate import upgrade
from models.partitions import include_name, month_of, months, next_month, partitions
from models.snapshots import raw_body, stored_values
from models.tables import metadata
from models.types import compact_raw
from models.views import VIEWS
from store.recording import MetricRow, Subject, record_snapshot
from tests import old_schema
from tests.conftest import PG_BASE_URL, _postgres_reachable

_TIMES = {"captured_at", "end_time", "posted_at", "expires_at"}
_SNAPSHOT_COLUMNS = (
    "id, account_id, platform, subject_type, subject_id, kind, version, slot, captured_at,"
    " source, api_version, delivery_id"
)
Rows = Counter[tuple[Any, ...]]
_KEPT = ("account", "media", "webhook_delivery", "notice")  # tables 0011 leaves as they were


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    if not _postgres_reachable():
        pytest.skip("PostgreSQL not reachable")
    schema = f"m_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _plain(column: str, value: Any) -> Any:
    """A view's value in one spelling for both schemas and backends: numbers as floats,
    timestamps as aware UTC datetimes (SQLite returns a view's timestamps as text), JSON
    that PostgreSQL parsed as its text."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, Decimal | float) or (column == "value" and isinstance(value, int)):
        return float(value)
    if column in _TIMES and isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _rows(conn: Connection, sql: str) -> tuple[tuple[str, ...], Rows]:
    result = conn.execute(sa.text(sql))
    columns = tuple(result.keys())
    rows = Counter(
        tuple(_plain(c, value) for c, value in zip(columns, row, strict=True)) for row in result
    )
    return columns, rows


def _old_values(conn: Connection) -> dict[int, list[tuple[Any, ...]]]:
    """Each snapshot's values in metric_value id order, as the old table held them."""
    found: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    sql = (
        "SELECT snapshot_id, metric, breakdown, dimension, end_time, value, flag"
        " FROM metric_value ORDER BY id"
    )
    names = ("snapshot_id", "metric", "breakdown", "dimension", "end_time", "value", "flag")
    for row in conn.execute(sa.text(sql)):
        plain = tuple(_plain(c, x) for c, x in zip(names, row, strict=True))
        found[plain[0]].append(plain[1:])
    return dict(found)


def _new_values(conn: Connection) -> dict[int, list[tuple[Any, ...]]]:
    found: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for x in stored_values(conn):
        row = (x.metric, x.breakdown, x.dimension, x.end_time, x.value, x.flag)
        found[x.snapshot_id].append(
            tuple(_plain(c, y) for c, y in zip(_VALUE_NAMES, row, strict=True))
        )
    return dict(found)


_VALUE_NAMES = ("metric", "breakdown", "dimension", "end_time", "value", "flag")


def _old_raw(conn: Connection) -> dict[int, Any]:
    """Each snapshot's raw answer (None for SQL NULL and JSON null alike)."""
    stmt = sa.select(sa.column("id"), sa.column("raw", sa.JSON)).select_from(sa.table("snapshot"))
    return {int(i): body for i, body in conn.execute(stmt)}


class Before:
    """Everything a reader could see in the old archive."""

    def __init__(self, conn: Connection) -> None:
        self.views = {name: _rows(conn, f"SELECT * FROM {name}") for name in VIEWS}
        self.tables = {name: _rows(conn, f"SELECT * FROM {name}") for name in _KEPT}
        self.snapshots = _rows(conn, f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshot")[1]
        self.values = _old_values(conn)
        self.value_count = conn.execute(sa.text("SELECT count(*) FROM metric_value")).scalar()
        self.raw = _old_raw(conn)
        self.max_id = int(conn.execute(sa.text("SELECT max(id) FROM snapshot")).scalar_one())


@pytest.fixture
def migrated(empty_url: str) -> Iterator[tuple[Engine, Before]]:
    """The old archive, read in full, then upgraded to head."""
    upgrade(empty_url, "0010")
    engine = create_db_engine(empty_url)
    with engine.begin() as conn:
        old_schema.fill(conn)
    with engine.connect() as conn:
        before = Before(conn)
    upgrade(empty_url)
    yield engine, before
    engine.dispose()


def test_the_old_archive_is_representative(migrated: tuple[Engine, Before]) -> None:
    """Every view had rows before the migration, so that comparing them proves something."""
    _, before = migrated
    assert all(rows for _, rows in before.views.values()), before.views.keys()
    assert before.value_count == sum(len(v) for _, v in old_schema.snapshots())
    assert sum(1 for _, v in old_schema.snapshots() if not v) == 2


def test_every_snapshot_keeps_its_id_columns_and_values(migrated: tuple[Engine, Before]) -> None:
    """Same snapshot rows; each one's values in the old id order, none lost or added."""
    engine, before = migrated
    with engine.connect() as conn:
        assert _rows(conn, f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshot")[1] == before.snapshots
        after = _new_values(conn)
        assert after == before.values
        assert sum(len(v) for v in after.values()) == before.value_count
        s = metadata.tables["snapshot"].c
        empty = conn.execute(sa.select(s.metric_keys, s.metric_values)).all()
    assert sum(1 for keys, values in empty if not keys and not values) == 2


def test_the_other_tables_keep_their_rows(migrated: tuple[Engine, Before]) -> None:
    """Accounts, deliveries and notices are as they were; media gained a row per subject that
    had snapshots and none: the story only a webhook saw, as the webhook path creates it today
    (live, nothing scheduled, discovered when its webhook came), and a post, 'done'."""
    engine, before = migrated
    with engine.connect() as conn:
        after = {name: _rows(conn, f"SELECT * FROM {name}") for name in _KEPT}
        added = conn.execute(
            sa.text(
                "SELECT account_id, platform, subject_type, capture_state, next_capture_at,"
                " discovered_at FROM media WHERE media_id = :id"
            ),
            {"id": old_schema.ORPHAN},
        ).one()
    for name in ("account", "webhook_delivery", "notice"):
        assert after[name] == before.tables[name], name
    columns, media = after["media"]
    new = (old_schema.ORPHAN, old_schema.LOST_POST)
    orphans = Counter({row: n for row, n in media.items() if any(i in row for i in new)})
    assert (columns, media - orphans) == before.tables["media"]
    assert sum(orphans.values()) == 2
    assert {row[columns.index("capture_state")] for row in orphans} == {"live", "done"}
    assert tuple(added[:5]) == (1, "instagram", "story", "live", None)
    assert _plain("captured_at", added[5]) == old_schema.at(2)


def test_metric_history_has_exactly_the_old_rows(migrated: tuple[Engine, Before]) -> None:
    """The public history view: same columns, same multiset of rows."""
    engine, before = migrated
    with engine.connect() as conn:
        assert _rows(conn, "SELECT * FROM metric_history") == before.views["metric_history"]


@pytest.mark.parametrize("name", [name for name in VIEWS if name != "metric_history"])
def test_every_other_view_keeps_its_rows(migrated: tuple[Engine, Before], name: str) -> None:
    """The derived views show what they showed; story_final alone differs, see below."""
    engine, before = migrated
    with engine.connect() as conn:
        columns, after = _rows(conn, f"SELECT * FROM {name}")
    old_columns, old = before.views[name]
    assert columns == old_columns
    if name == "story_final":
        after = _without_orphan(columns, after)
    if name == "threads_post_latest":
        old = _with_media_row(columns, old)
    assert after == old


def _without_orphan(columns: tuple[str, ...], rows: Rows) -> Rows:
    """story_final listed only stories with a media row. The migration gives the story that
    only a webhook saw the row the webhook path creates today, so its webhook values now show
    too, as they would for such a story captured after the migration: API columns null."""
    at = columns.index("subject_id")
    orphan = Counter({row: n for row, n in rows.items() if row[at] == old_schema.ORPHAN})
    shown = sorted((row[8], row[13]) for row in orphan.elements())
    assert shown == [("exits", 1.0), ("impressions", 9.0), ("reach", 8.0), ("reach", 9.0)]
    assert all(row[5:8] == (None, None, None) and row[11] is None for row in orphan)
    return rows - orphan


def _with_media_row(columns: tuple[str, ...], rows: Rows) -> Rows:
    """threads_post_latest showed a post without a media row with the media columns null;
    the migration gives it one whose schedule is over, so its capture_state is 'done'."""
    post, state = columns.index("media_id"), columns.index("capture_state")
    lost = [row for row in rows if row[post] == old_schema.LOST_POST]
    assert len(lost) == 2
    assert all(row[state] is None for row in lost)
    fixed = Counter((*row[:state], "done", *row[state + 1 :]) for row in lost)
    return rows - Counter(lost) + fixed


def test_raw_answers_move_to_snapshot_raw(migrated: tuple[Engine, Before]) -> None:
    """A snapshot's raw answer is in snapshot_raw as a new capture's would be (without Meta's
    titles and descriptions); none is stored for one that had none."""
    engine, before = migrated
    with engine.connect() as conn:
        moved = {i: raw_body(conn, i) for i in before.raw}
        count = conn.execute(sa.text("SELECT count(*) FROM snapshot_raw")).scalar()
    assert moved == {i: compact_raw(body) for i, body in before.raw.items()}
    assert count == sum(1 for body in before.raw.values() if body is not None)
    assert any(body is None for body in before.raw.values())
    story = moved[1]["data"][0]
    assert story["name"] == "reach"
    assert set(story) == {"name", "period", "values", "id"}
    assert "title" in before.raw[1]["data"][0]
    assert story["values"] == [{"value": 1}]
    assert moved[1]["media"] == {"title": "my story"}


def test_a_new_capture_continues_the_ids_and_versions(migrated: tuple[Engine, Before]) -> None:
    """The first capture after the migration gets a new id and the story's next version."""
    engine, before = migrated
    subject = Subject(1, "instagram", "story", old_schema.STORY)
    with Session(engine) as session:
        recorded, created = record_snapshot(
            session=session,
            subject=subject,
            slot="after",
            source="api",
            metrics=[MetricRow("reach", 50), MetricRow("views", 60)],
            captured_at=datetime.now(UTC),
        )
        session.commit()
    assert created
    assert recorded.id > before.max_id
    assert recorded.version == 6


def test_models_and_migrated_schema_agree(migrated: tuple[Engine, Before]) -> None:
    """Autogenerate finds nothing to change in a migrated archive."""
    engine, _ = migrated
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": include_name})
        assert compare_metadata(context, metadata) == []


_BIG = [
    ("media", "id"),
    ("media", "final_snapshot_id"),
    ("snapshot", "id"),
    ("snapshot", "delivery_id"),
    ("snapshot_raw", "snapshot_id"),
    ("webhook_delivery", "id"),
    ("notice", "id"),
]


def test_ids_are_bigint_on_postgresql(migrated: tuple[Engine, Before]) -> None:
    """The growing tables' ids, the columns that hold them and their sequences are BIGINT."""
    engine, _ = migrated
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's INTEGER PRIMARY KEY is 64-bit already")
    with engine.connect() as conn:
        types = {
            (table, column): conn.execute(
                sa.text(
                    "SELECT data_type FROM information_schema.columns WHERE table_name = :t"
                    " AND column_name = :c AND table_schema = current_schema()"
                ),
                {"t": table, "c": column},
            ).scalar()
            for table, column in _BIG
        }
        sequences = {
            name: (kind, int(top))
            for name, kind, top in conn.execute(
                sa.text(
                    "SELECT sequencename, data_type::text, max_value FROM pg_sequences"
                    " WHERE schemaname = current_schema()"
                )
            )
        }
        owner = conn.execute(sa.text("SELECT pg_get_serial_sequence('snapshot', 'id')")).scalar()
    assert set(types.values()) == {"bigint"}, types
    for table in ("media", "snapshot", "webhook_delivery", "notice"):
        assert sequences[f"{table}_id_seq"] == ("bigint", 2**63 - 1)
    assert str(owner).endswith(".snapshot_id_seq")


def test_partitions_cover_the_old_months_and_two_ahead(migrated: tuple[Engine, Before]) -> None:
    """Every month from the oldest capture to two months from now (or to the newest capture,
    a year ahead here) has its partitions, and each old row is in its month's."""
    engine, _ = migrated
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps single tables")
    captured = [columns["captured_at"] for columns, _ in old_schema.snapshots()]
    ahead = next_month(next_month(month_of(datetime.now(UTC))))
    wanted = months(min(captured), max(ahead, max(captured)))
    with engine.connect() as conn:
        for table in ("snapshot", "snapshot_raw"):
            assert [p.start for p in partitions(conn, table)] == wanted
        holding = conn.execute(
            sa.text("SELECT DISTINCT tableoid::regclass::text FROM snapshot")
        ).scalars()
        assert set(holding) == {f"snapshot_p{month_of(c):%Y%m}" for c in captured}


def test_a_failed_upgrade_leaves_the_old_archive_whole(empty_url: str) -> None:
    """0011 fails at its last step (an index name taken): the archive is still 0010, every
    row and view as before; once the obstacle is gone the upgrade completes."""
    upgrade(empty_url, "0010")
    engine = create_db_engine(empty_url)
    with engine.begin() as conn:
        old_schema.fill(conn)
        conn.execute(sa.text("CREATE INDEX ix_media_account_posted ON notice (kind)"))
    with engine.connect() as conn:
        before = Before(conn)
    with pytest.raises((sa.exc.DBAPIError, StoreUnavailable)):
        upgrade(empty_url)
    with engine.connect() as conn:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        again = Before(conn)
    assert revision == "0010"
    assert (again.views, again.values, again.raw) == (before.views, before.values, before.raw)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_media_account_posted"))
    upgrade(empty_url)
    with engine.connect() as conn:
        assert _new_values(conn) == before.values
    engine.dispose()


def test_an_empty_database_upgrades(empty_url: str) -> None:
    """A brand-new database migrates from nothing to views that answer (and on PostgreSQL,
    this month's partitions and the next two)."""
    upgrade(empty_url)
    engine = create_db_engine(empty_url)
    with engine.connect() as conn:
        for name in VIEWS:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar() == 0
        found = partitions(conn, "snapshot") if engine.dialect.name == "postgresql" else None
    engine.dispose()
    if found is not None:
        now = month_of(datetime.now(UTC))
        assert [p.start for p in found] == [now, next_month(now), next_month(next_month(now))]
