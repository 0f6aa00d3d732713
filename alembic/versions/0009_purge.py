"""jobs: when and why an audit record's prompts and pictures were purged (retention, forget),
and the indexes those purges look jobs up by (member, end, parent)

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
    # A forget finds a member's jobs and what controls made from them; retention, what ended
    # before its cutoff: without these each is a scan of the whole table.
    op.create_index("ix_jobs_user_id", "jobs", ["user_id"])
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])
    op.create_index("ix_jobs_parent_job_id", "jobs", ["parent_job_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_parent_job_id", table_name="jobs")
    op.drop_index("ix_jobs_finished_at", table_name="jobs")
    op.drop_index("ix_jobs_user_id", table_name="jobs")
    # The purged prompts stay empty: what was deleted does not come back.
    op.drop_column("jobs", "purge_reason")
    op.drop_column("jobs", "purged_at")
