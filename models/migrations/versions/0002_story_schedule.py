"""story schedule: discovery and capture bookkeeping

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stories_polled_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("next_story_poll_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_slot", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("next_capture_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_media_state_next_capture", ["capture_state", "next_capture_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_index("ix_media_state_next_capture")
        batch_op.drop_column("next_capture_at")
        batch_op.drop_column("next_slot")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("next_story_poll_at")
        batch_op.drop_column("stories_polled_at")
