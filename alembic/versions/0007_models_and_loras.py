"""models and LoRAs: a job's LoRAs and embeddings, the models and LoRAs a guild allows

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 14:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE on `jobs` (see 0006: a batch copy on SQLite would cascade to its
    # images). SQLite adds a NOT NULL column only with a default: the empty list, which is
    # also what every earlier job had.
    for name in ("loras", "embeddings"):
        op.add_column(
            "jobs", sa.Column(name, sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    # NULL: every model (every LoRA) of the bot's catalog; otherwise a JSON list of names.
    with op.batch_alter_table("guild_settings") as batch:
        batch.add_column(sa.Column("allowed_models", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("allowed_loras", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("guild_settings") as batch:
        batch.drop_column("allowed_loras")
        batch.drop_column("allowed_models")
    op.drop_column("jobs", "embeddings")
    op.drop_column("jobs", "loras")
