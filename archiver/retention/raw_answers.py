"""Dropping Meta's raw answers (`snapshot_raw`) by age; the values stay.

On PostgreSQL a month that lies wholly before the cutoff is detached and dropped at once
(models.partitions.drop_partition); the rest is deleted in batches of bounded size, each its
own transaction. The cutoff never reaches a live story: it stays a day before the oldest one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from archiver.progress import ProgressBar
from core.errors import StoreUnavailable
from models.partitions import Partition, drop_partition, partitions
from models.tables import Media, SnapshotRaw, table_of

ROWS_PER_DELETE = 5000
_SLACK = timedelta(days=1)

_media = table_of(Media)
_raw = table_of(SnapshotRaw)


@dataclass
class RawOutcome:
    """Raw answers captured before `cutoff`: how many rows, and the partitions dropped whole."""

    cutoff: datetime
    rows: int = 0
    partitions: list[str] = field(default_factory=list)


def prune_raw(
    engine: Engine,
    cutoff: datetime,
    *,
    dry_run: bool,
    progress: ProgressBar | None = None,
    lock_timeout: str = "10s",
) -> RawOutcome:
    """Delete (or, with `dry_run`, count) the raw answers captured before `cutoff`; a month
    whose table stays locked longer than `lock_timeout` is left for the next run."""
    with engine.connect() as conn:
        cutoff = _safe_cutoff(conn, cutoff)
        whole = _whole_months(conn, cutoff)
        counts = [_count(conn, sa.table(p.name)) for p in whole]
        rest = _count(conn, _raw, _raw.c.captured_at < cutoff) - sum(counts)
    outcome = RawOutcome(cutoff, sum(counts) + rest, [p.name for p in whole])
    if dry_run:
        return outcome
    done = 0
    for partition, rows in zip(whole, counts, strict=True):
        _drop(engine, partition, lock_timeout)
        done += rows
        _show(progress, done, outcome)
    while done < outcome.rows:
        deleted = _delete_batch(engine, cutoff)
        if deleted == 0:
            break
        done += deleted
        _show(progress, done, outcome)
    return outcome


def _drop(engine: Engine, partition: Partition, lock_timeout: str) -> None:
    try:
        drop_partition(engine, partition, lock_timeout=lock_timeout)
    except OperationalError as exc:  # lock_timeout: writers held the table all along
        msg = f"could not drop {partition.name} ({exc.orig or exc}); run `archiver prune` again"
        raise StoreUnavailable(msg) from exc


def _safe_cutoff(conn: Connection, cutoff: datetime) -> datetime:
    """A day before the oldest live story. A story known only from its webhook (no expiry:
    no listing saw it live, Meta sends story_insights once it has expired) stays `live`
    with nothing left to capture; after a day it no longer holds the cutoff back."""
    m = _media.c
    posted = sa.func.min(sa.func.coalesce(m.posted_at, m.discovered_at))
    capturable = sa.or_(m.expires_at.is_not(None), m.discovered_at >= cutoff)
    stmt = sa.select(posted).where(m.subject_type == "story", m.capture_state == "live", capturable)
    oldest: datetime | None = conn.execute(stmt).scalar()
    return cutoff if oldest is None else min(cutoff, oldest - _SLACK)


def _whole_months(conn: Connection, cutoff: datetime) -> list[Partition]:
    if conn.dialect.name != "postgresql":
        return []
    return [p for p in partitions(conn, _raw.name) if p.end <= cutoff]


def _count(conn: Connection, table: sa.TableClause, *where: sa.ColumnElement[bool]) -> int:
    stmt = sa.select(sa.func.count()).select_from(table).where(*where)
    return int(conn.execute(stmt).scalar() or 0)


def _delete_batch(engine: Engine, cutoff: datetime) -> int:
    key = (_raw.c.snapshot_id, _raw.c.captured_at)
    picked = sa.select(*key).where(_raw.c.captured_at < cutoff).limit(ROWS_PER_DELETE)
    with engine.begin() as conn:
        return conn.execute(sa.delete(_raw).where(sa.tuple_(*key).in_(picked))).rowcount


def _show(progress: ProgressBar | None, done: int, outcome: RawOutcome) -> None:
    if progress is not None:
        progress.update(done, outcome.rows, len(outcome.partitions))
