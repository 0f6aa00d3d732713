"""jobs: when and why an audit record's prompts and pictures were purged (retention, forget)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 01:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE on `jobs` (see 0006: a batch copy on SQLite would cascade to its
    # images); no record was purged before.
    op.add_column("jobs", sa.Column("purged_at", sa.DateTime(), nullable=True))
    op.add_column("jobs", sa.Column("purge_reason", sa.String(16), nullable=True))


def downgrade() -> None:
    # The purged prompts stay empty: what was deleted does not come back.
    op.drop_column("jobs", "purge_reason")
    op.drop_column("jobs", "purged_at")
