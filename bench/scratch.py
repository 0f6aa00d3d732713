"""The settings a benchmark runs the product under: the operator's, on a scratch database and
folder, the queue in this process, and no rate limit in the way (the benches measure the
device and the path, not the limits)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings

UNLIMITED = 1_000_000.0  # the most a rate or burst setting may be


def scratch_settings(settings: Settings, scratch: Path, **updates: object) -> Settings:
    """``settings`` with its data in ``scratch`` and its limits lifted; ``updates`` on top."""
    return settings.model_copy(
        update={
            "data_dir": scratch,
            "database_url": f"sqlite+aiosqlite:///{scratch / 'bench.db'}",
            "output_dir": scratch / "images",
            "redis_url": None,
            "user_images_per_hour": UNLIMITED,
            "user_burst": UNLIMITED,
            "guild_images_per_hour": UNLIMITED,
            "guild_burst": UNLIMITED,
            "max_jobs_per_user": 1000,
            "max_queue_depth": 100_000,
            **updates,
        }
    )
