"""the queue: retry counts, the NSFW channel flag on jobs, limits in standard images

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE, not batch mode: on SQLite a batch copy drops and re-creates `jobs`, and
    # dropping it cascades to the images that point at it.
    op.add_column("jobs", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "jobs", sa.Column("channel_nsfw", sa.Boolean(), nullable=False, server_default=sa.false())
    )

    # The limits count work (standard 512×512, 20-step images), not jobs; a job-count limit set
    # before meant at most that many 4-image grids, which is what it becomes.
    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(sa.Column("user_images_per_hour", sa.Float(), nullable=True))
        batch.add_column(sa.Column("guild_images_per_hour", sa.Float(), nullable=True))
        batch.alter_column("max_queued_per_user", new_column_name="max_jobs_per_user")
    op.execute(
        "UPDATE guild_settings SET user_images_per_hour = 4.0 * jobs_per_user_per_hour, "
        "guild_images_per_hour = 4.0 * jobs_per_guild_per_hour"
    )
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("jobs_per_user_per_hour")
        batch.drop_column("jobs_per_guild_per_hour")


def downgrade() -> None:
    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(sa.Column("jobs_per_user_per_hour", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("jobs_per_guild_per_hour", sa.Integer(), nullable=True))
        batch.alter_column("max_jobs_per_user", new_column_name="max_queued_per_user")
    op.execute(
        "UPDATE guild_settings SET "
        "jobs_per_user_per_hour = CAST(user_images_per_hour / 4 AS INTEGER), "
        "jobs_per_guild_per_hour = CAST(guild_images_per_hour / 4 AS INTEGER)"
    )
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("user_images_per_hour")
        batch.drop_column("guild_images_per_hour")
    # A refused request has no status in the older schema: it reads as failed, with its reason.
    op.execute("UPDATE jobs SET status = 'failed' WHERE status = 'refused'")
    op.drop_column("jobs", "channel_nsfw")
    op.drop_column("jobs", "attempts")
