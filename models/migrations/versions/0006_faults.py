"""faults: per-side failure counts and problems (back-off), error times, data-access expiry,
deleted Threads posts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 17:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ig_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("ig_problem", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("threads_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("threads_problem", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("ig_data_access_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("last_error_at")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("ig_data_access_expires_at")
        batch_op.drop_column("last_error_at")
        batch_op.drop_column("threads_problem")
        batch_op.drop_column("threads_failures")
        batch_op.drop_column("ig_problem")
        batch_op.drop_column("ig_failures")
