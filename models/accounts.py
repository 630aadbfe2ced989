"""Registered accounts: an Instagram professional account and, optionally, its Threads profile."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from core.crypto import TokenText
from models.types import ScrubbedText, UTCDateTime, utcnow


class Account(SQLModel, table=True):
    """One registered account. Its errors, problems and reasons are ScrubbedText: a token
    Meta quotes back in an error is stored masked (models.types)."""

    __tablename__ = "account"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(200), nullable=False, unique=True))
    # The IG professional account id: webhook `entry.id`, IG-Login `/me.user_id`.
    ig_user_id: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    ig_token: str = Field(sa_column=sa.Column(TokenText, nullable=False), repr=False)
    login: str = Field(default="facebook", sa_column=sa.Column(sa.String(16), nullable=False))
    ig_token_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ig_token_refreshed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Facebook Login: debug_token's data_access_expires_at (the user's data access lapses then).
    ig_data_access_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Facebook Login: when debug_token was last asked about the token (once a day), and what
    # kept it from answering then (null: it answered). Answered with no expiry: never expires.
    ig_token_checked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ig_token_check_error: str | None = Field(default=None, sa_type=ScrubbedText)

    threads_user_id: str | None = Field(default=None, sa_type=sa.String(64))
    threads_token: str | None = Field(default=None, sa_type=TokenText, repr=False)
    threads_link_source: str | None = Field(default=None, sa_type=sa.String(32))
    threads_linked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    threads_token_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    threads_token_refreshed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    # Threads polling: when it last ran and when it is due again (null: now); the Threads
    # token's own state, so a lapsed Threads token never stops the Instagram side.
    threads_polled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_threads_poll_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    threads_state: str = Field(
        default="active",
        sa_column=sa.Column(sa.String(32), nullable=False, server_default="active"),
    )
    threads_state_reason: str | None = Field(default=None, sa_type=ScrubbedText)

    # active | reauth_required | disabled
    state: str = Field(default="active", sa_column=sa.Column(sa.String(32), nullable=False))
    state_reason: str | None = Field(default=None, sa_type=ScrubbedText)
    last_error: str | None = Field(default=None, sa_type=ScrubbedText)
    last_error_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Errors that retrying cannot fix (permission 10/200, #100 on the account): how many in a
    # row, and the reason shown to operators; each side backs off exponentially until fixed.
    ig_failures: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    ig_problem: str | None = Field(default=None, sa_type=ScrubbedText)
    threads_failures: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    threads_problem: str | None = Field(default=None, sa_type=ScrubbedText)
    # Story discovery: when /stories was last listed, and when it is due again (null: now).
    stories_polled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_story_poll_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Account insights (one run per closed Meta day, workers.captures.account_insights): when
    # it last ran, when it is due again (null: now), failures in a row and the reason shown.
    ig_insights_polled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_ig_insights_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ig_insights_failures: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    ig_insights_problem: str | None = Field(default=None, sa_type=ScrubbedText)
    # Feed posts and Reels: when /media was last listed, when it is due again (null: now),
    # and its failures in a row with the reason shown to operators (store.backoff).
    media_listed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_media_listing_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    media_failures: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    media_problem: str | None = Field(default=None, sa_type=ScrubbedText)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


def mask_token(token: str | None) -> str:
    """Enough of a token to tell two apart, never enough to use one."""
    if not token:
        return "-"
    return f"{token[:4]}…{token[-4:]}" if len(token) > 12 else "****"


class MetricUnavailable(SQLModel, table=True):
    """A metric Meta will not give for an account (THREADS_API__FEATURE_NOT_AVAILABLE: no
    linked Instagram account, too few followers), so polls stop asking until `retry_at`."""

    __tablename__ = "metric_unavailable"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "platform", "metric", name="uq_metric_unavailable"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("account.id", ondelete="CASCADE"), nullable=False
        )
    )
    platform: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    metric: str = Field(sa_column=sa.Column(sa.String(64), nullable=False))
    reason: str | None = Field(default=None, sa_type=ScrubbedText)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
