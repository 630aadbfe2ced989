"""Writing a capture: one append-only snapshot version holding its values, idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from models.accounts import MetricUnavailable
from models.partitions import ensure_month
from models.snapshots import MetricKey, Snapshot, SnapshotRaw
from models.tables import table_of
from models.types import utcnow

BELOW_THRESHOLD = "below_threshold"
UNAVAILABLE = "unavailable"
NOT_SUPPORTED = "not_supported"  # Meta refused the metric for this media (#100), so not asked


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
_raw = table_of(SnapshotRaw)
_key = table_of(MetricKey)


@dataclass(frozen=True)
class Recorded:
    """The snapshot row a capture ended up in (new, or the one its slot already had)."""

    id: int
    version: int
    captured_at: datetime


def _same_subject(subject: Subject) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        _snapshot.c.subject_id == subject.subject_id,
        _snapshot.c.kind == subject.kind,
        _snapshot.c.platform == subject.platform,
        _snapshot.c.subject_type == subject.subject_type,
    )


def find_snapshot(session: Session, subject: Subject, slot: str) -> Recorded | None:
    stmt = sa.select(_snapshot.c.id, _snapshot.c.version, _snapshot.c.captured_at).where(
        *_same_subject(subject), _snapshot.c.slot == slot
    )
    row = session.connection().execute(stmt).first()
    return None if row is None else Recorded(*row)


def _lock_subject(session: Session, subject: Subject) -> None:
    """Serialise writers of one subject until commit (PostgreSQL; SQLite writes one at a
    time): the slot check and the version number below then cannot race."""
    if session.get_bind().dialect.name != "postgresql":
        return
    key = "|".join((subject.platform, subject.subject_type, subject.subject_id, subject.kind))
    session.connection().execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
    )


def _next_version(session: Session, subject: Subject) -> int:
    stmt = sa.select(sa.func.max(_snapshot.c.version)).where(*_same_subject(subject))
    return int(session.connection().execute(stmt).scalar() or 0) + 1


def metric_key_ids(conn: sa.Connection, metrics: list[MetricRow]) -> dict[KeyName, int]:
    """The `metric_key` id of every (metric, breakdown, dimension) in `metrics`, adding the
    new ones (sorted, so that two writers adding the same keys never deadlock)."""
    wanted = sorted({_key_name(row) for row in metrics})
    if not wanted:
        return {}
    found = _select_keys(conn, wanted)
    missing = [name for name in wanted if name not in found]
    if missing:
        dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
        rows = [{"metric": m, "breakdown": b, "dimension": d} for m, b, d in missing]
        conn.execute(dialect.insert(_key).values(rows).on_conflict_do_nothing())
        found.update(_select_keys(conn, missing))
    return found


KeyName = tuple[str, str, str]


def _key_name(row: MetricRow) -> KeyName:
    return (row.metric, row.breakdown or "", row.dimension or "")


def _select_keys(conn: sa.Connection, names: list[KeyName]) -> dict[KeyName, int]:
    columns = (_key.c.metric, _key.c.breakdown, _key.c.dimension)
    stmt = sa.select(_key.c.id, *columns).where(sa.tuple_(*columns).in_(names))
    return {(m, b, d): int(key_id) for key_id, m, b, d in conn.execute(stmt)}


def packed_values(metrics: list[MetricRow], keys: dict[KeyName, int]) -> dict[str, Any]:
    """A capture's values as the snapshot row stores them, position by position; end_times
    and flags stay null when no value has one."""
    end_times = [row.end_time for row in metrics]
    flags = [row.flag for row in metrics]
    return {
        "metric_keys": [keys[_key_name(row)] for row in metrics],
        "metric_values": [row.value for row in metrics],
        "end_times": end_times if any(t is not None for t in end_times) else None,
        "flags": flags if any(f is not None for f in flags) else None,
    }


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
    """Store a new version unless `slot` was captured already; return (snapshot, created)."""
    captured_at = captured_at or utcnow()
    session.flush()  # Core statements below skip autoflush: the caller's pending rows first
    bind = session.get_bind()
    ensure_month(bind if isinstance(bind, Engine) else bind.engine, captured_at)
    _lock_subject(session, subject)
    existing = find_snapshot(session, subject, slot)
    if existing is not None:
        return existing, False
    conn = session.connection()
    version = _next_version(session, subject)
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
        "captured_at": captured_at,
        "version": version,
        **packed_values(metrics, metric_key_ids(conn, metrics)),
    }
    snapshot_id = conn.execute(sa.insert(_snapshot).values(values).returning(_snapshot.c.id))
    recorded = Recorded(int(snapshot_id.scalar_one()), version, captured_at)
    if raw is not None:
        body = {"snapshot_id": recorded.id, "captured_at": captured_at, "body": raw}
        conn.execute(sa.insert(_raw).values(body))
    return recorded, True


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
