"""guild admin settings: largest side, the channels the bot answers in, pausing generation

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 19:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(sa.Column("max_side", sa.Integer(), nullable=True))
        # NULL: every channel; otherwise a JSON list of channel ids.
        batch.add_column(sa.Column("channels", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("paused_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("pause_reason", sa.Text(), nullable=True))
    op.create_index(
        "ix_moderation_actions_guild_id_target_user_id",
        "moderation_actions",
        ["guild_id", "target_user_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_moderation_actions_guild_id_target_user_id", "moderation_actions")
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("pause_reason")
        batch.drop_column("paused_at")
        batch.drop_column("channels")
        batch.drop_column("max_side")
