"""Monthly history partitions on PostgreSQL, and the per-subject lock that replaced the unique
version and slot constraints: concurrent writers still get one version per slot."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from models.accounts import Account
from models.db import create_db_engine, session_scope
from models.partitions import ensure_ahead, is_partition, partitions
from reports.figures import read_gauges
from store.recording import MetricRow, Subject, record_snapshot

FAR = datetime(2031, 5, 17, 12, 0, tzinfo=UTC)


def add_account(engine: Engine) -> int:
    with session_scope(engine) as session:
        account = Account(name="shop", ig_user_id="1784", ig_token="EAAtoken")
        session.add(account)
        session.flush()
        assert account.id is not None
        return account.id


def record(engine: Engine, subject: Subject, slot: str, at: datetime | None = None) -> int:
    with session_scope(engine) as session:
        recorded, _ = record_snapshot(
            session=session, subject=subject, slot=slot, source="api",
            metrics=[MetricRow("reach", 5.0)], raw={"data": []}, captured_at=at,
        )  # fmt: skip
        return recorded.version


def months_of(engine: Engine, table: str) -> list[str]:
    with engine.connect() as conn:
        return [f"{p.start:%Y-%m}" for p in partitions(conn, table)]


def test_the_months_ahead_are_created_and_reported(pg: Engine) -> None:
    """ensure_ahead makes this month and the next two for both tables; the gauge says 2, and
    a month later (before the tick catches up) 1."""
    now = datetime(2030, 1, 20, tzinfo=UTC)
    created = ensure_ahead(pg, now)
    assert {"snapshot_p203001", "snapshot_p203003", "snapshot_raw_p203002"} <= set(created)
    assert {"2030-01", "2030-02", "2030-03"} <= set(months_of(pg, "snapshot_raw"))
    assert read_gauges(pg, grace=timedelta(0), now=now).partition_months_ahead == 2
    later = read_gauges(pg, grace=timedelta(0), now=now + timedelta(days=31))
    assert later.partition_months_ahead == 1
    assert ensure_ahead(pg, now) == []  # known months are not asked again


def test_a_capture_in_a_month_without_partition_creates_it(pg: Engine) -> None:
    """The write path never fails for want of a partition: it attaches the month first, on
    its own connection, while its own transaction is open."""
    subject = Subject(add_account(pg), "instagram", "story", "17900000000000001")
    assert "2031-05" not in months_of(pg, "snapshot")
    assert record(pg, subject, "first", FAR) == 1
    assert "2031-05" in months_of(pg, "snapshot")
    with pg.connect() as conn:
        stored = conn.execute(sa.text("SELECT captured_at FROM snapshot_p203105")).scalar()
        raw = conn.execute(sa.text("SELECT count(*) FROM snapshot_raw_p203105")).scalar()
    assert (stored, raw) == (FAR, 1)


def test_concurrent_writers_of_one_subject_get_one_version_per_slot(database_url: str) -> None:
    """Eight writers race: the same slot is recorded once, different slots get versions
    1..n with none repeated (the per-subject lock on PostgreSQL, one writer on SQLite)."""
    engine = create_db_engine(database_url, pool_size=8)
    subject = Subject(add_account(engine), "instagram", "story", "17900000000000002")
    with ThreadPoolExecutor(8) as pool:
        same = list(pool.map(lambda _: record(engine, subject, "final"), range(8)))
        other = list(pool.map(lambda n: record(engine, subject, f"s{n}"), range(8)))
    engine.dispose()
    assert same == [1] * 8
    assert sorted(other) == list(range(2, 10))


def test_partition_names_are_told_apart_from_tables() -> None:
    names = ["snapshot_p202612", "snapshot_raw_p202701", "snapshot", "snapshot_raw", "snapshot_px"]
    assert [is_partition(name) for name in names] == [True, True, False, False, False]
