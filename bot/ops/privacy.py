"""A member's data deleted everywhere (database, image folder, Redis) and recorded: `sdbot
forget`, `/mod forget user` and `/privacy delete` all come here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.imagine.service import ImagineService


@dataclass(frozen=True)
class ForgetReport:
    """What was deleted for one member (``guild_id`` None: in every guild and in DMs)."""

    user_id: int
    guild_id: int | None
    jobs: int  # audit records whose prompts were purged (the rows keep ids, verdicts, hashes)
    images: int  # image files deleted
    inputs: int  # pictures the member gave, dropped
    redis_entries: int  # job entries removed from Redis
    cancelled: int  # open jobs of the member's that were cancelled first


async def forget_member(
    service: ImagineService,
    *,
    user_id: int,
    guild_id: int | None,
    actor_id: int | None,
    via: str,
) -> ForgetReport:
    """Cancels the member's open jobs, purges their prompts and pictures (in ``guild_id``
    only when given), deletes their image files and Redis entries, and records that it was
    done (a moderation action with the counts, never the prompts). ``via``: cli, mod or
    privacy. Idempotent: a second call finds nothing more and says so."""
    raise NotImplementedError  # issue 19: being built
