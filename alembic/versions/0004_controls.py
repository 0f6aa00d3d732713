"""controls on posted grids: who may use them, and one job per control

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: the default (the requester and moderators).
    op.add_column("guild_settings", sa.Column("controls", sa.String(16), nullable=True))
    op.create_table(
        "job_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parent_job_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("child_job_id", sa.Integer(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_job_id"],
            ["jobs.id"],
            name=op.f("fk_job_actions_parent_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["child_job_id"],
            ["jobs.id"],
            name=op.f("fk_job_actions_child_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_actions")),
        sa.UniqueConstraint(
            "parent_job_id", "action", name=op.f("uq_job_actions_parent_job_id_action")
        ),
    )


def downgrade() -> None:
    op.drop_table("job_actions")
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("controls")
