"""Monthly partitions of the history tables on PostgreSQL (`snapshot`, `snapshot_raw`).

A query over a time window reads only the months it covers, and retention drops a month
whole instead of deleting its rows one by one. The service creates partitions ahead
(`MONTHS_AHEAD`, at `archiver db upgrade` and every tick) and, should a capture land in a
month that has none, the write path creates it first (`ensure_month`). A new month is created
empty and then attached: ATTACH takes a lock that lets captures go on writing meanwhile.
SQLite keeps single tables; every function here does nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

PARTITIONED = ("snapshot", "snapshot_raw")
MONTHS_AHEAD = 2
_LOCK = "archiver:partitions"
_KNOWN = "_archiver_partition_months"  # months this engine has seen exist, on the engine


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    start: datetime
    end: datetime


def month_of(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(month: datetime) -> datetime:
    return (
        month.replace(year=month.year + 1, month=1)
        if month.month == 12
        else month.replace(month=month.month + 1)
    )


def months(start: datetime, end: datetime) -> list[datetime]:
    """Every month from the one holding `start` to the one holding `end`, inclusive."""
    found, month = [], month_of(start)
    while month <= end:
        found.append(month)
        month = next_month(month)
    return found


def partition_name(table: str, month: datetime) -> str:
    return f"{table}_p{month:%Y%m}"


def create_month(conn: Connection, month: datetime) -> list[str]:
    """Create `month`'s partitions that are missing, in `conn`'s transaction; their names."""
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:lock))"), {"lock": _LOCK})
    created = []
    for table in PARTITIONED:
        name = partition_name(table, month)
        exists = conn.execute(sa.text("SELECT to_regclass(:name)"), {"name": name}).scalar()
        if exists is not None:
            continue
        bounds = f"FROM ('{month.isoformat()}') TO ('{next_month(month).isoformat()}')"
        conn.execute(sa.text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)"))
        conn.execute(sa.text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {bounds}"))
        created.append(name)
    return created


def ensure_months(engine: Engine, start: datetime, end: datetime) -> list[str]:
    """Create the partitions from `start`'s month to `end`'s that this engine has not seen
    exist yet; the names created."""
    if engine.dialect.name != "postgresql":
        return []
    created: list[str] = []
    for month in months(start, end):
        if month in _known(engine):
            continue
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
            created += create_month(conn, month)
        _known(engine).add(month)
    return created


def ensure_ahead(engine: Engine, now: datetime) -> list[str]:
    """This month's partitions and the next `MONTHS_AHEAD`, created if missing."""
    end = now
    for _ in range(MONTHS_AHEAD):
        end = next_month(month_of(end))
    return ensure_months(engine, now, end)


def ensure_month(engine: Engine, when: datetime) -> None:
    """Make sure a row captured at `when` has a partition; free once this engine has seen it.

    Runs on its own connection, so the caller's transaction (which may already hold locks on
    the parent) never waits for itself: ATTACH does not conflict with writers.
    """
    ensure_months(engine, when, when)


def drop_partition(engine: Engine, partition: Partition, *, lock_timeout: str = "10s") -> None:
    """Detach `partition` and drop it: retention (`archiver prune`) lets a month go at once
    instead of deleting its rows one by one. Detaching locks the parent table briefly, so
    writers wait at most `lock_timeout` behind it rather than queue for good.
    """
    if partition.table not in PARTITIONED or not is_partition(partition.name):
        msg = f"{partition.name} is not a monthly partition of {partition.table}"
        raise ValueError(msg)
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT set_config('lock_timeout', :t, true)"), {"t": lock_timeout})
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:lock))"), {"lock": _LOCK})
        conn.execute(sa.text(f"ALTER TABLE {partition.table} DETACH PARTITION {partition.name}"))
        conn.execute(sa.text(f"DROP TABLE {partition.name}"))
    # A capture dated in that month (none should be) finds the month missing and recreates it.
    _known(engine).discard(month_of(partition.start))


def _known(engine: Engine) -> set[datetime]:
    known: set[datetime] | None = getattr(engine, _KNOWN, None)
    if known is None:
        known = set()
        setattr(engine, _KNOWN, known)
    return known


def partitions(conn: Connection, table: str) -> list[Partition]:
    """`table`'s partitions with their bounds, oldest first (PostgreSQL only)."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:table)"
        ),
        {"table": table},
    ).all()
    found = [_parse(table, name, bound) for name, bound in rows]
    return sorted((p for p in found if p is not None), key=lambda p: p.start)


def _parse(table: str, name: str, bound: str) -> Partition | None:
    # "FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')"
    quoted = bound.split("'")
    if len(quoted) < 4:
        return None
    start, end = (datetime.fromisoformat(quoted[i]).astimezone(UTC) for i in (1, 3))
    return Partition(table, name, start, end)


def is_partition(name: str | None) -> bool:
    """A monthly partition's name: schema comparisons (alembic) leave partitions out, since
    the models describe only the parent tables."""
    return bool(name) and any(
        str(name).startswith(f"{table}_p") and str(name)[len(table) + 2 :].isdigit()
        for table in PARTITIONED
    )


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """For alembic's comparisons: the parent tables, not their partitions."""
    return not (type_ == "table" and is_partition(name))
