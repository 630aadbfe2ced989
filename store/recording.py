"""Writing a capture: one append-only snapshot version plus its metric rows, idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.accounts import MetricUnavailable
from models.snapshots import MetricValue, Snapshot
from models.tables import table_of
from models.types import utcnow

BELOW_THRESHOLD = "below_threshold"
UNAVAILABLE = "unavailable"
NOT_SUPPORTED = "not_supported"  # Meta refused the metric for this media (#100), so not asked
_VERSION_RACE_TRIES = 8


@dataclass(frozen=True)
class MetricRow:
    """One value of a capture, as it will appear in `metric_history`."""

    metric: str
    value: float | None
    breakdown: str | None = None
    dimension: str | None = None
    end_time: datetime | None = None
    flag: str | None = None


@dataclass(frozen=True)
class Subject:
    """What a snapshot is of: (platform, subject_type, subject_id) plus the capture kind."""

    account_id: int
    platform: str
    subject_type: str
    subject_id: str
    kind: str = "insights"


_snapshot = table_of(Snapshot)
_metric_value = table_of(MetricValue)


@dataclass(frozen=True)
class Recorded:
    """The snapshot row a capture ended up in (new, or the one its slot already had)."""

    id: int
    version: int
    captured_at: datetime


def _same_subject(subject: Subject) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        _snapshot.c.platform == subject.platform,
        _snapshot.c.subject_type == subject.subject_type,
        _snapshot.c.subject_id == subject.subject_id,
        _snapshot.c.kind == subject.kind,
    )


def find_snapshot(session: Session, subject: Subject, slot: str) -> Recorded | None:
    stmt = sa.select(_snapshot.c.id, _snapshot.c.version, _snapshot.c.captured_at).where(
        *_same_subject(subject), _snapshot.c.slot == slot
    )
    row = session.connection().execute(stmt).first()
    return None if row is None else Recorded(*row)


def _insert_version(
    session: Session, subject: Subject, values: dict[str, Any]
) -> tuple[int, int] | None:
    """INSERT the next version unless a unique key (slot or version) is taken: (id, version).

    One statement: the version is computed inside the INSERT, and ON CONFLICT DO NOTHING
    replaces a savepoint per try (PostgreSQL and SQLite alike).
    """
    version = (
        sa.select(sa.func.coalesce(sa.func.max(_snapshot.c.version), 0) + 1)
        .where(*_same_subject(subject))
        .scalar_subquery()
    )
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    stmt = (
        dialect.insert(_snapshot)
        .values(**values, version=version)
        .on_conflict_do_nothing()
        .returning(_snapshot.c.id, _snapshot.c.version)
    )
    row = session.connection().execute(stmt).first()
    return None if row is None else (int(row[0]), int(row[1]))


def record_snapshot(
    *,
    session: Session,
    subject: Subject,
    slot: str,
    source: str,
    metrics: list[MetricRow],
    raw: Any = None,
    api_version: str | None = None,
    delivery_id: int | None = None,
    captured_at: datetime | None = None,
) -> tuple[Recorded, bool]:
    """Store a new version unless `slot` was captured already; return (snapshot, created).

    Concurrent writers of the same subject race on the version number; the unique
    constraints decide, and the loser either finds its slot taken or tries the next version.
    """
    values = {
        "account_id": subject.account_id,
        "platform": subject.platform,
        "subject_type": subject.subject_type,
        "subject_id": subject.subject_id,
        "kind": subject.kind,
        "slot": slot,
        "source": source,
        "api_version": api_version,
        "delivery_id": delivery_id,
        "raw": raw,
        "captured_at": captured_at or utcnow(),
    }
    session.flush()  # Core statements below skip autoflush: the caller's pending rows first
    for _ in range(_VERSION_RACE_TRIES):
        inserted = _insert_version(session, subject, values)
        if inserted is None:
            existing = find_snapshot(session, subject, slot)
            if existing is not None:
                return existing, False
            continue  # another writer took this version number for another slot
        snapshot_id, version = inserted
        if metrics:  # one executemany through Core: the ORM's unit of work costs ~10x more
            rows = [{"snapshot_id": snapshot_id, **row.__dict__} for row in metrics]
            session.connection().execute(sa.insert(_metric_value), rows)
        return Recorded(snapshot_id, version, values["captured_at"]), True
    msg = f"could not allocate a snapshot version for {subject} after {_VERSION_RACE_TRIES} tries"
    raise RuntimeError(msg)


def unavailable_metrics(
    engine: Engine, *, platform: str, account_id: int, now: datetime
) -> set[str]:
    """An account's metrics not to ask for now on `platform` (Meta said it will not give
    them: Threads user insights, Instagram account insights; see `retry_at`)."""
    stmt = select(MetricUnavailable.metric).where(
        col(MetricUnavailable.account_id) == account_id,
        col(MetricUnavailable.platform) == platform,
        sa.or_(col(MetricUnavailable.retry_at).is_(None), col(MetricUnavailable.retry_at) > now),
    )
    with Session(engine) as session:
        return set(session.exec(stmt).all())


def mark_unavailable(
    engine: Engine,
    *,
    platform: str,
    account_id: int,
    metrics: list[str],
    reason: str,
    retry_at: datetime,
) -> list[str]:
    """Record that Meta will not give `metrics` until `retry_at`; return those that were not
    recorded before (the caller logs them, once)."""
    where = (
        col(MetricUnavailable.account_id) == account_id,
        col(MetricUnavailable.platform) == platform,
    )
    with Session(engine) as session:
        rows = {
            row.metric: row
            for row in session.exec(
                select(MetricUnavailable).where(*where, col(MetricUnavailable.metric).in_(metrics))
            )
        }
        for metric in metrics:
            row = rows.get(metric) or MetricUnavailable(
                account_id=account_id, platform=platform, metric=metric
            )
            row.reason, row.retry_at = reason[:2000], retry_at
            session.add(row)
        session.commit()
    return [metric for metric in metrics if metric not in rows]
