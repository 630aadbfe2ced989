"""threads days: threads_user_daily v2 (range totals dated by their window), Facebook Login
token checks (debug_token)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.views_v1 import THREADS_USER_DAILY_V1, THREADS_USER_DAILY_V2

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ig_token_checked_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("ig_token_check_error", sa.Text(), nullable=True))
    op.execute("DROP VIEW IF EXISTS threads_user_daily")
    op.execute(THREADS_USER_DAILY_V2[op.get_bind().dialect.name])


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS threads_user_daily")
    op.execute(THREADS_USER_DAILY_V1[op.get_bind().dialect.name])
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("ig_token_check_error")
        batch_op.drop_column("ig_token_checked_at")
