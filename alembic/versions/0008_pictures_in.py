"""pictures in: how a job starts (image, inpaint, outpaint, a source seed, a ControlNet), the
pictures members give (job_inputs), a guild's vary strength

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 17:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE on `jobs` (see 0006: a batch copy on SQLite would cascade to its
    # images); every earlier job started from noise.
    op.add_column(
        "jobs",
        sa.Column("start", sa.String(16), nullable=False, server_default=sa.text("'text'")),
    )
    op.add_column("jobs", sa.Column("strength", sa.Float(), nullable=True))
    op.add_column("jobs", sa.Column("source_seed", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("source_upscale", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("control", sa.String(16), nullable=True))
    op.add_column("jobs", sa.Column("control_scale", sa.Float(), nullable=True))
    op.create_table(
        "job_inputs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("nsfw_score", sa.Float(), nullable=True),
        sa.Column("watermark_id", sa.BigInteger(), nullable=True),
        sa.Column("parent_job_id", sa.Integer(), nullable=True),
        sa.Column("png", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_inputs_job_id_jobs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_job_id"],
            ["jobs.id"],
            name="fk_job_inputs_parent_job_id_jobs",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_job_inputs"),
        sa.UniqueConstraint("job_id", "role", name="uq_job_inputs_job_id_role"),
    )
    op.create_index("ix_job_inputs_sha256", "job_inputs", ["sha256"])
    # NULL: subtle (generation.starts.VARY_STRENGTHS)
    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(sa.Column("vary", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("vary")
    op.drop_index("ix_job_inputs_sha256", table_name="job_inputs")
    op.drop_table("job_inputs")
    for name in ("control_scale", "control", "source_upscale", "source_seed", "strength", "start"):
        op.drop_column("jobs", name)
