"""layered moderation: force-safe and regex terms that can expire, image dispositions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("terms") as batch:
        batch.alter_column("kind", existing_type=sa.String(length=8), type_=sa.String(length=16))
        batch.add_column(
            sa.Column("is_regex", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("terms") as batch:
        batch.alter_column("is_regex", server_default=None)

    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(sa.Column("nsfw_threshold", sa.Float(), nullable=True))
    # "channel" (the old default) meant what "block" means now: flagged images never posted.
    # Anything else that is not a policy now falls back to the safe one as well.
    op.execute(
        "UPDATE guild_settings SET nsfw_policy = 'block' "
        "WHERE nsfw_policy NOT IN ('block', 'spoiler')"
    )

    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("safety_threshold", sa.Float(), nullable=True))
        batch.add_column(sa.Column("model_flagged", sa.Boolean(), nullable=True))
        batch.add_column(
            sa.Column("disposition", sa.String(length=16), nullable=False, server_default="shown")
        )
    # Before this revision a flagged variant was never shown.
    op.execute(
        "UPDATE images SET disposition = 'withheld' "
        "WHERE safety_verdict = 'flagged' AND variant > 0"
    )
    with op.batch_alter_table("images") as batch:
        batch.alter_column("disposition", server_default=None)


def downgrade() -> None:
    # Force-safe and regex entries have no place in the older schema: they are deleted.
    with op.batch_alter_table("images") as batch:
        batch.drop_column("disposition")
        batch.drop_column("model_flagged")
        batch.drop_column("safety_threshold")
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("nsfw_threshold")
    op.execute("DELETE FROM terms WHERE kind = 'force_safe' OR is_regex")
    with op.batch_alter_table("terms") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("is_regex")
        batch.alter_column("kind", existing_type=sa.String(length=16), type_=sa.String(length=8))
