"""jobs: an identity that is never reused (uid), and the lease of the process that runs a job

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE, not batch mode: on SQLite a batch copy drops and re-creates `jobs`, and
    # dropping it cascades to the images that point at it. SQLite adds a NOT NULL column only
    # with a default: '' until every row has its own uid just below.
    op.add_column(
        "jobs", sa.Column("uid", sa.String(32), nullable=False, server_default=sa.text("''"))
    )
    op.add_column("jobs", sa.Column("lease_owner", sa.String(128), nullable=True))
    op.add_column("jobs", sa.Column("lease_expires_at", sa.DateTime(), nullable=True))

    jobs = sa.table("jobs", sa.column("id", sa.Integer), sa.column("uid", sa.String))
    connection = op.get_bind()
    ids = [row[0] for row in connection.execute(sa.select(jobs.c.id))]
    for job_id in ids:
        connection.execute(sa.update(jobs).where(jobs.c.id == job_id).values(uid=uuid.uuid4().hex))
    if connection.dialect.name != "sqlite":  # SQLite cannot drop a default without a copy
        op.alter_column("jobs", "uid", server_default=None)
    op.create_index("ix_jobs_uid", "jobs", ["uid"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_uid", "jobs")
    op.drop_column("jobs", "lease_expires_at")
    op.drop_column("jobs", "lease_owner")
    op.drop_column("jobs", "uid")
