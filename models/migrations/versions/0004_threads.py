"""threads: polling bookkeeping, the Threads token's state, metrics Meta will not give

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("threads_polled_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("next_threads_poll_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "threads_state", sa.String(length=32), nullable=False, server_default="active"
            )
        )
        batch_op.add_column(sa.Column("threads_state_reason", sa.Text(), nullable=True))
    op.create_table(
        "metric_unavailable",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "platform", "metric", name="uq_metric_unavailable"),
    )


def downgrade() -> None:
    op.drop_table("metric_unavailable")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("threads_state_reason")
        batch_op.drop_column("threads_state")
        batch_op.drop_column("next_threads_poll_at")
        batch_op.drop_column("threads_polled_at")
