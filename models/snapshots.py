"""Subjects (stories, posts, accounts), their append-only snapshot versions and metric values.

A snapshot holds its values side by side (`metric_keys`, `metric_values`, `end_times`,
`flags`: one position per value), each key naming a (metric, breakdown, dimension) in
`metric_key`, so a 16-value capture is one row, not 16; the `metric_history` view unfolds
them. On PostgreSQL `snapshot` and `snapshot_raw` are partitioned by month of `captured_at`
(models.partitions); the migrations create them so, the models here describe the columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Field, Session, SQLModel

from models.deliveries import JSONType
from models.types import (
    BigId,
    FloatArray,
    IntArray,
    PackedJSON,
    ScrubbedText,
    TextArray,
    TimeArray,
    UTCDateTime,
    utcnow,
)


class Media(SQLModel, table=True):
    """A story or Threads post we track; one row per Meta media id."""

    __tablename__ = "media"
    __table_args__ = (
        sa.UniqueConstraint("platform", "media_id", name="uq_media_platform_media_id"),
        sa.Index("ix_media_account_expires", "account_id", "expires_at"),
        sa.Index("ix_media_account_posted", "account_id", "posted_at"),
        sa.Index("ix_media_subject_posted", "subject_type", "posted_at"),
        sa.Index("ix_media_state_next_capture", "capture_state", "next_capture_at"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigId, primary_key=True))
    account_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False
        )
    )
    platform: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    subject_type: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    media_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    media_type: str | None = Field(default=None, sa_type=sa.String(32))
    media_product_type: str | None = Field(default=None, sa_type=sa.String(32))
    permalink: str | None = Field(default=None, sa_type=sa.Text)
    caption: str | None = Field(default=None, sa_type=sa.Text)
    posted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    discovered_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # live | final_captured | missed  (stories); tracked | done (posts)
    capture_state: str = Field(default="live", sa_column=sa.Column(sa.String(32), nullable=False))
    final_snapshot_id: int | None = Field(default=None, sa_type=BigId)
    # The capture to take next (slot name and when); null once nothing more is scheduled.
    next_slot: str | None = Field(default=None, sa_type=sa.String(32))
    next_capture_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    missed_reason: str | None = Field(default=None, sa_type=ScrubbedText)
    last_error: str | None = Field(default=None, sa_type=ScrubbedText)
    last_error_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A Threads post Meta reported deleted (the `delete` webhook): capturing stopped then.
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    raw: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONType))


class Snapshot(SQLModel, table=True):
    """One capture of a subject. Versions count 1, 2, 3 ... per (subject, kind), never reused.

    No unique constraint says so: on a partitioned table it would have to include
    `captured_at`. store.recording takes a per-subject lock instead (PostgreSQL; SQLite writes
    one at a time), so a retried or duplicated slot finds its version and writes nothing.
    """

    __tablename__ = "snapshot"
    __table_args__ = (
        sa.Index("ix_snapshot_subject", "subject_id", "kind", "version"),
        sa.Index("ix_snapshot_account_captured", "account_id", "captured_at"),
        # Rows arrive in capture order, so a BRIN index finds a time window for almost nothing.
        sa.Index("ix_snapshot_captured", "captured_at", postgresql_using="brin"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigId, primary_key=True))
    # No foreign key: attaching a new month would then lock `account` against the captures
    # writing meanwhile. `archiver accounts remove` deletes an account's snapshots itself.
    account_id: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    platform: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    subject_type: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    subject_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    kind: str = Field(default="insights", sa_column=sa.Column(sa.String(32), nullable=False))
    version: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    slot: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    captured_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    source: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    api_version: str | None = Field(default=None, sa_type=sa.String(16))
    # For webhook snapshots, the delivery (webhook_delivery.id), which is never deleted.
    delivery_id: int | None = Field(default=None, sa_type=BigId)
    # The values, position by position (see the module docstring); end_times and flags are
    # null when no value of the snapshot has one.
    metric_keys: list[int] = Field(
        default_factory=list, sa_column=sa.Column(IntArray, nullable=False)
    )
    metric_values: list[float | None] = Field(
        default_factory=list, sa_column=sa.Column(FloatArray, nullable=False)
    )
    end_times: list[datetime | None] | None = Field(
        default=None, sa_column=sa.Column(TimeArray, nullable=True)
    )
    flags: list[str | None] | None = Field(
        default=None, sa_column=sa.Column(TextArray, nullable=True)
    )


class SnapshotRaw(SQLModel, table=True):
    """Meta's answers behind a snapshot, kept apart so that the values stay small and `raw`
    can be pruned on its own (`archiver prune --raw-after`)."""

    __tablename__ = "snapshot_raw"

    snapshot_id: int = Field(sa_column=sa.Column(BigId, primary_key=True, autoincrement=False))
    captured_at: datetime = Field(sa_column=sa.Column(UTCDateTime, nullable=False))
    # Without Meta's constant titles and descriptions, scrubbed of any token an error quoted
    # back, compressed (models.types.PackedJSON).
    body: Any = Field(default=None, sa_column=sa.Column(PackedJSON, nullable=False))


class MetricKey(SQLModel, table=True):
    """A (metric, breakdown, dimension) named once; snapshots refer to it by id. '' means
    none (so that the unique constraint holds on every backend); the views show null."""

    __tablename__ = "metric_key"
    __table_args__ = (
        sa.UniqueConstraint("metric", "breakdown", "dimension", name="uq_metric_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    metric: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    breakdown: str = Field(
        default="", sa_column=sa.Column(sa.String(64), nullable=False, server_default="")
    )
    dimension: str = Field(
        default="", sa_column=sa.Column(sa.Text, nullable=False, server_default="")
    )


@dataclass(frozen=True)
class StoredValue:
    """One value of one snapshot, as `metric_history` shows it (with the snapshot's slot)."""

    snapshot_id: int
    version: int
    slot: str
    source: str
    captured_at: datetime
    metric: str
    breakdown: str | None
    dimension: str | None
    end_time: datetime | None
    value: float | None
    flag: str | None


def stored_values(conn: Connection, *where: sa.ColumnElement[bool]) -> list[StoredValue]:
    """The values of the snapshots `where` selects, oldest version first, each in its stored
    order: unfolded here rather than in SQL, so that one query reads both backends alike."""
    s = _snapshot_table().c
    stmt = (
        sa.select(
            s.id,
            s.version,
            s.slot,
            s.source,
            s.captured_at,
            s.metric_keys,
            s.metric_values,
            s.end_times,
            s.flags,
        )
        .where(*where)
        .order_by(s.version)
    )
    rows = conn.execute(stmt).all()
    names = _key_names(conn, {key for row in rows for key in row.metric_keys})
    found = []
    for row in rows:
        ends = row.end_times or [None] * len(row.metric_keys)
        flags = row.flags or [None] * len(row.metric_keys)
        for key, value, end, flag in zip(
            row.metric_keys, row.metric_values, ends, flags, strict=True
        ):
            metric, breakdown, dimension = names[key]
            found.append(
                StoredValue(
                    row.id,
                    row.version,
                    row.slot,
                    row.source,
                    row.captured_at,
                    metric,
                    breakdown or None,
                    dimension or None,
                    end,
                    value,
                    flag,
                )
            )
    return found


def _key_names(conn: Connection, ids: set[int]) -> dict[int, tuple[str, str, str]]:
    if not ids:
        return {}
    k = _key_table().c
    stmt = sa.select(k.id, k.metric, k.breakdown, k.dimension).where(k.id.in_(sorted(ids)))
    return {row.id: (row.metric, row.breakdown, row.dimension) for row in conn.execute(stmt)}


def _snapshot_table() -> sa.Table:  # models.tables.table_of would import this module back
    return Snapshot.__table__  # type: ignore[attr-defined,no-any-return]


def _raw_table() -> sa.Table:
    return SnapshotRaw.__table__  # type: ignore[attr-defined,no-any-return]


def _key_table() -> sa.Table:
    return MetricKey.__table__  # type: ignore[attr-defined,no-any-return]


def newest_capture_per_end(values: list[StoredValue], since: datetime) -> dict[datetime, datetime]:
    """For each `end_time` since `since`, when its newest value was captured."""
    newest: dict[datetime, datetime] = {}
    for v in values:
        if v.end_time is not None and v.end_time >= since:
            newest[v.end_time] = max(newest.get(v.end_time, v.captured_at), v.captured_at)
    return newest


def delete_snapshots(session: Session, account_id: int | None) -> None:
    """An account's snapshots and their raw answers (no foreign key cascades to them)."""
    snapshot, raw = _snapshot_table(), _raw_table()
    mine = snapshot.c.account_id == account_id
    session.execute(
        sa.delete(raw).where(raw.c.snapshot_id.in_(sa.select(snapshot.c.id).where(mine)))
    )
    session.execute(sa.delete(snapshot).where(mine))


def raw_body(conn: Connection, snapshot_id: int | None) -> Any:
    """The raw answers stored with a snapshot (None when none were kept, or were pruned)."""
    raw = _raw_table()
    stmt = sa.select(raw.c.body).where(raw.c.snapshot_id == snapshot_id)
    return conn.execute(stmt).scalar()
