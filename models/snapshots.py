"""Subjects (stories, Threads posts), their append-only snapshot versions and metric values."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.deliveries import JSONType
from models.scrubbed import ScrubbedJSON, ScrubbedText
from models.types import UTCDateTime, utcnow


class Media(SQLModel, table=True):
    """A story or Threads post we track; one row per Meta media id."""

    __tablename__ = "media"
    __table_args__ = (
        sa.UniqueConstraint("platform", "media_id", name="uq_media_platform_media_id"),
        sa.Index("ix_media_account_expires", "account_id", "expires_at"),
        sa.Index("ix_media_state_next_capture", "capture_state", "next_capture_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
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
    final_snapshot_id: int | None = Field(default=None)
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
    """One capture of a subject. Versions count 1, 2, 3 ... per (subject, kind), never reused."""

    __tablename__ = "snapshot"
    __table_args__ = (
        sa.UniqueConstraint(
            "platform", "subject_type", "subject_id", "kind", "version", name="uq_snapshot_version"
        ),
        # The slot key makes a retried or duplicated capture a no-op.
        sa.UniqueConstraint(
            "platform", "subject_type", "subject_id", "kind", "slot", name="uq_snapshot_slot"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
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
    delivery_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("webhook_delivery.id", ondelete="SET NULL")),
    )
    # Meta's answers as received, scrubbed of any token an error quoted back.
    raw: Any = Field(default=None, sa_column=sa.Column(ScrubbedJSON))


class MetricValue(SQLModel, table=True):
    __tablename__ = "metric_value"

    id: int | None = Field(default=None, primary_key=True)
    snapshot_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("snapshot.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    metric: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    breakdown: str | None = Field(default=None, sa_type=sa.String(64))
    dimension: str | None = Field(default=None, sa_type=sa.Text)
    end_time: datetime | None = Field(default=None, sa_type=UTCDateTime)
    value: float | None = Field(default=None, sa_type=sa.Numeric(asdecimal=False))
    # below_threshold (Meta said "fewer than 5") | unavailable (empty data)
    flag: str | None = Field(default=None, sa_type=sa.String(32))
