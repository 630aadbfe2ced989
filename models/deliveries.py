"""The raw archive of every signed webhook delivery, stored before it is acknowledged."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from models.types import BigId, ScrubbedText, UTCDateTime, utcnow

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")

# Life of a delivery row: received -> enqueued -> one of the final states.
RECEIVED = "received"
ENQUEUED = "enqueued"
PROCESSED = "processed"
UNROUTED = "unrouted"  # names an account that is not registered (yet): `archiver replay`
IGNORED = "ignored"  # a field we archive but do not turn into snapshots
UNPARSEABLE = "unparseable"  # signed, but not strict JSON, not a known envelope, or unstorable
REJECTED = "rejected"  # signed by one platform's secret, naming the other's object: not applied
FAILED = "failed"  # processing raised; error and traceback kept
PENDING_STATES = (RECEIVED, ENQUEUED)
FINAL_STATES = (PROCESSED, UNROUTED, IGNORED, UNPARSEABLE, REJECTED, FAILED)


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.UniqueConstraint("platform", "body_sha256", name="uq_webhook_delivery_body"),
        sa.Index("ix_webhook_delivery_status", "status", "id"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigId, primary_key=True))
    platform: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False), repr=False)
    body_sha256: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    headers: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSONType, nullable=False)
    )
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    status: str = Field(default=RECEIVED, sa_column=sa.Column(sa.String(16), nullable=False))
    enqueued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    summary: str | None = Field(default=None, sa_type=ScrubbedText)
    error: str | None = Field(default=None, sa_type=ScrubbedText)
    traceback: str | None = Field(default=None, sa_type=ScrubbedText)
