"""guild_settings: gore_policy, where a guild lets gore prompts through (NULL: only in
age-restricted channels, spoilered there, the default); jobs: the prompt classifier's scores

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 04:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL reads as age_restricted: every guild keeps today's behaviour for flagged images and
    # gets the default gore policy without a rewrite of its row.
    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(sa.Column("gore_policy", sa.String(16), nullable=True))
    # Plain ALTER TABLE on `jobs` (see 0006: a batch copy on SQLite would cascade to its
    # images). NULL: recorded before the classifier.
    op.add_column("jobs", sa.Column("classifier_scores", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "classifier_scores")
    # Older code has no gore rule: a guild's "block" goes with the column.
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("gore_policy")
