"""Thinning applied: subjects read from `media` in batches, each batch one short transaction.

Only versions captured before the cutoff are deleted, and never a subject's newest, so a
capture running meanwhile (it writes a new version, captured now) loses nothing and its
version number is never reused; no lock on the subject is needed. A live story is skipped
whole. Deleted snapshots take their raw answers with them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from archiver.progress import ProgressBar
from archiver.retention.rules import THINNED, Thinning, Version, to_delete
from models.tables import Media, Snapshot, SnapshotRaw, table_of

SUBJECTS_PER_BATCH = 200
IDS_PER_DELETE = 500
# A snapshot is never captured before its subject was posted (models.views: a day of slack).
_SLACK = timedelta(days=1)

_media = table_of(Media)
_snapshot = table_of(Snapshot)
_raw = table_of(SnapshotRaw)

SubjectKey = tuple[str, str, str]  # platform, subject_type, subject_id


@dataclass
class Tally:
    """One subject type's outcome: subjects looked at, their versions kept and deleted."""

    subjects: int = 0
    kept: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class _Subject:
    id: int
    key: SubjectKey
    final_id: int | None
    expires_at: datetime | None


def thin(
    engine: Engine, thinning: Thinning, *, dry_run: bool, progress: ProgressBar | None = None
) -> dict[str, Tally]:
    """Thin every subject that has versions older than the cutoff; the tallies by type."""
    tallies = {subject_type: Tally() for subject_type in THINNED}
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).where(*_candidate(thinning))).scalar()
    done = deleted = 0
    for batch in _batches(engine, thinning):
        with engine.begin() as conn:
            doomed = _thin_batch(conn, batch, thinning, tallies)
            if not dry_run:
                _delete(conn, [v.id for v in doomed], thinning.cutoff)
        done, deleted = done + len(batch), deleted + len(doomed)
        if progress is not None:
            progress.update(done, int(total or 0), deleted)
    return tallies


def _candidate(thinning: Thinning) -> tuple[sa.ColumnElement[bool], ...]:
    posted = sa.func.coalesce(_media.c.posted_at, _media.c.discovered_at)
    return (
        _media.c.subject_type.in_(THINNED),
        _media.c.capture_state != "live",
        posted < thinning.cutoff + _SLACK,
    )


def _batches(engine: Engine, thinning: Thinning) -> Iterator[list[_Subject]]:
    m = _media.c
    after = 0
    while True:
        stmt = (
            sa.select(m.id, m.platform, m.subject_type, m.media_id, m.final_snapshot_id)
            .add_columns(m.expires_at)
            .where(*_candidate(thinning), m.id > after)
            .order_by(m.id)
            .limit(SUBJECTS_PER_BATCH)
        )
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return
        yield [_Subject(r.id, (r[1], r[2], r[3]), r[4], r[5]) for r in rows]
        after = rows[-1].id


def _thin_batch(
    conn: Connection, batch: list[_Subject], thinning: Thinning, tallies: dict[str, Tally]
) -> list[Version]:
    versions = _versions(conn, batch)
    doomed: list[Version] = []
    for subject in batch:
        mine = versions.get(subject.key, [])
        going = to_delete(mine, thinning, final_id=subject.final_id, expires_at=subject.expires_at)
        tally = tallies[subject.key[1]]
        tally.subjects += 1
        tally.kept += len(mine) - len(going)
        tally.deleted += len(going)
        doomed += going
    return doomed


def _versions(conn: Connection, batch: list[_Subject]) -> dict[SubjectKey, list[Version]]:
    s = _snapshot.c
    stmt = sa.select(
        s.platform, s.subject_type, s.subject_id, s.id, s.version, s.slot, s.source
    ).add_columns(s.captured_at, s.metric_keys)
    stmt = stmt.where(
        s.kind == "insights",
        s.subject_id.in_(sorted({subject.key[2] for subject in batch})),
        s.subject_type.in_(sorted({subject.key[1] for subject in batch})),
    )
    found: dict[SubjectKey, list[Version]] = defaultdict(list)
    for row in conn.execute(stmt):
        version = Version(row[3], row[4], row[5], row[6], row[7], tuple(row[8] or ()))
        found[(row[0], row[1], row[2])].append(version)
    return found


def _delete(conn: Connection, ids: list[int], cutoff: datetime) -> None:
    """The snapshots and their raw answers; `captured_at` bounds both, so that PostgreSQL
    looks only in the months before the cutoff."""
    for start in range(0, len(ids), IDS_PER_DELETE):
        chunk = ids[start : start + IDS_PER_DELETE]
        conn.execute(
            sa.delete(_raw).where(_raw.c.snapshot_id.in_(chunk), _raw.c.captured_at < cutoff)
        )
        conn.execute(
            sa.delete(_snapshot).where(_snapshot.c.id.in_(chunk), _snapshot.c.captured_at < cutoff)
        )
