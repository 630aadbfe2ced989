"""threads views: threads_user_daily and threads_post_latest

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

from alembic import op

from models.views_v1 import THREADS_POST_LATEST_V1, THREADS_USER_DAILY_V1

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The UTC day is spelled per dialect (see models.views.UTC_DAY_V1); the rest is shared.
    op.execute(THREADS_USER_DAILY_V1[op.get_bind().dialect.name])
    op.execute(THREADS_POST_LATEST_V1)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS threads_post_latest")
    op.execute("DROP VIEW IF EXISTS threads_user_daily")
