"""ig account insights: when each account's daily insights run is due, its failures, and the
views ig_account_daily and ig_account_demographics

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-06 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.views_v1 import IG_ACCOUNT_DAILY_V1, IG_ACCOUNT_DEMOGRAPHICS_V1

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ig_insights_polled_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("next_ig_insights_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("ig_insights_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("ig_insights_problem", sa.Text(), nullable=True))
    dialect = op.get_bind().dialect.name
    op.execute(IG_ACCOUNT_DAILY_V1[dialect])
    op.execute(IG_ACCOUNT_DEMOGRAPHICS_V1[dialect])


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS ig_account_demographics")
    op.execute("DROP VIEW IF EXISTS ig_account_daily")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("ig_insights_problem")
        batch_op.drop_column("ig_insights_failures")
        batch_op.drop_column("next_ig_insights_at")
        batch_op.drop_column("ig_insights_polled_at")
