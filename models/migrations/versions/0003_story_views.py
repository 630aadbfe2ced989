"""story views: story_latest and story_final

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

from alembic import op

from models.views_v1 import STORY_FINAL_V1, STORY_LATEST_V1

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(STORY_LATEST_V1)
    op.execute(STORY_FINAL_V1)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS story_final")
    op.execute("DROP VIEW IF EXISTS story_latest")
