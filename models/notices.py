"""Notices to operators (NOTIFY_WEBHOOK_URL): one row per event, kept after it is sent.

The unique `dedupe_key` names the event (`final_missed:instagram:<media id>`,
`reauth:<account>:<side>:<episode>` ...), so detecting it again at the next tick, or in two
control workers at once, inserts nothing: one notice per event, not per tick.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.types import BigId, ScrubbedJSON, ScrubbedText, UTCDateTime, utcnow

# Life of a notice: pending (waiting for its next attempt) -> delivered | undeliverable (kept).
PENDING = "pending"
DELIVERED = "delivered"
UNDELIVERABLE = "undeliverable"

# What happened: a side needs re-authorisation, a token (or Facebook Login data access) expires
# within NOTIFY_TOKEN_DAYS, a story expired without its final capture, webhook deliveries fail.
REAUTH = "reauth"
TOKEN_EXPIRING = "token_expiring"
FINAL_MISSED = "final_missed"
DELIVERIES_FAILING = "deliveries_failing"
KINDS = (REAUTH, TOKEN_EXPIRING, FINAL_MISSED, DELIVERIES_FAILING)


class Notice(SQLModel, table=True):
    __tablename__ = "notice"
    __table_args__ = (
        sa.UniqueConstraint("dedupe_key", name="uq_notice_dedupe_key"),
        sa.Index("ix_notice_state_next_attempt", "state", "next_attempt_at"),
        sa.Index("ix_notice_kind_subject", "kind", "account_id", "subject"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(BigId, primary_key=True))
    dedupe_key: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    kind: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    account_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("account.id", ondelete="CASCADE")),
    )
    # What the event is about within the account: `instagram`, `threads`,
    # `instagram_data_access`, `<platform>:<media id>`, `deliveries`.
    subject: str = Field(sa_column=sa.Column(sa.String(200), nullable=False))
    text: str = Field(sa_column=sa.Column(ScrubbedText, nullable=False))
    details: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(ScrubbedJSON, nullable=False)
    )
    state: str = Field(default=PENDING, sa_column=sa.Column(sa.String(16), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False)
    )
    attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=ScrubbedText)
    # A condition that holds for a while (re-authorisation, failing deliveries): when it was
    # seen to hold no more; the next time it holds is a new event.
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
