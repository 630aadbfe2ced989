"""ig media: feed posts and Reels (account listing columns, the media_latest view)

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-06 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.views_v1 import MEDIA_LATEST_V1

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("media_listed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("next_media_listing_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("media_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("media_problem", sa.Text(), nullable=True))
    op.execute(MEDIA_LATEST_V1)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS media_latest")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("media_problem")
        batch_op.drop_column("media_failures")
        batch_op.drop_column("next_media_listing_at")
        batch_op.drop_column("media_listed_at")
