"""Writing a capture: one append-only snapshot version plus its metric rows, idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from models.snapshots import MetricValue, Snapshot
from models.types import utcnow

BELOW_THRESHOLD = "below_threshold"
UNAVAILABLE = "unavailable"
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


def find_snapshot(session: Session, subject: Subject, slot: str) -> Snapshot | None:
    stmt = select(Snapshot).where(
        Snapshot.platform == subject.platform,
        Snapshot.subject_type == subject.subject_type,
        Snapshot.subject_id == subject.subject_id,
        Snapshot.kind == subject.kind,
        Snapshot.slot == slot,
    )
    return session.exec(stmt).first()


def _next_version(session: Session, subject: Subject) -> int:
    stmt = select(sa.func.coalesce(sa.func.max(col(Snapshot.version)), 0)).where(
        col(Snapshot.platform) == subject.platform,
        col(Snapshot.subject_type) == subject.subject_type,
        col(Snapshot.subject_id) == subject.subject_id,
        col(Snapshot.kind) == subject.kind,
    )
    return int(session.exec(stmt).one()) + 1


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
) -> tuple[Snapshot, bool]:
    """Store a new version unless `slot` was captured already; return (snapshot, created).

    Concurrent writers of the same subject race on the version number; the unique
    constraints decide, and the loser either finds its slot taken or tries the next version.
    """
    for _ in range(_VERSION_RACE_TRIES):
        existing = find_snapshot(session, subject, slot)
        if existing is not None:
            return existing, False
        snapshot = Snapshot(
            account_id=subject.account_id,
            platform=subject.platform,
            subject_type=subject.subject_type,
            subject_id=subject.subject_id,
            kind=subject.kind,
            version=_next_version(session, subject),
            slot=slot,
            source=source,
            api_version=api_version,
            delivery_id=delivery_id,
            raw=raw,
            captured_at=captured_at or utcnow(),
        )
        try:
            with session.begin_nested():
                session.add(snapshot)
                session.flush()
        except IntegrityError:
            continue
        assert snapshot.id is not None
        if metrics:  # one executemany through Core: the ORM's unit of work costs ~10x more
            values = [{"snapshot_id": snapshot.id, **row.__dict__} for row in metrics]
            session.execute(sa.insert(MetricValue.__table__), values)  # type: ignore[attr-defined]
        return snapshot, True
    msg = f"could not allocate a snapshot version for {subject} after {_VERSION_RACE_TRIES} tries"
    raise RuntimeError(msg)
