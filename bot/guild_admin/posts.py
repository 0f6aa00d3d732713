"""Taking down sdbot's posts of a member: /mod purge, and the first step of `/mod forget` and
`/privacy delete`. Deleting one post comes in as a callable (``DeletePost``), so no Discord
client is needed here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from storage.posts import MemberPost, PostedMessages
from storage.retention import Retention


@dataclass(frozen=True)
class Deleted:
    """What became of one post: deleted now, already gone, or left with why (``failed``)."""

    gone_before: bool = False
    failed: str = ""


DeletePost = Callable[[int, int], Awaitable[Deleted]]  # channel id, message id


async def deletion_posts(
    posts: PostedMessages, retention: Retention, user_id: int, guild_id: int | None
) -> list[MemberPost]:
    """The posts a member's deletion takes down: those of every job it purges, theirs and the
    ones others made from theirs with a control (an upscale or reroll shows the member's prompt
    and picture, whoever clicked), in ``guild_id`` or everywhere (None)."""
    scope = await retention.forget_scope(user_id, guild_id)
    return await posts.posts_for_jobs(scope.ids)


@dataclass(frozen=True)
class PurgeOutcome:
    """What a take-down did: posts deleted, found already gone, and left (by channel, why)."""

    deleted: int
    already_gone: int
    failed: dict[int, str]  # channel id → why the posts there stayed
    posts: int

    @classmethod
    def total(cls, outcomes: Iterable[PurgeOutcome]) -> PurgeOutcome:
        """Several take-downs (one per guild) as one."""
        done = list(outcomes)
        failed = {channel: why for one in done for channel, why in one.failed.items()}
        return cls(
            sum(one.deleted for one in done),
            sum(one.already_gone for one in done),
            failed,
            sum(one.posts for one in done),
        )


async def take_down(
    posts: PostedMessages, found: Iterable[MemberPost], delete: DeletePost
) -> PurgeOutcome:
    """Deletes sdbot's posts one by one through ``delete`` (discord.py waits out the rate
    limits); a deleted or vanished post is unlinked from its job, one that stays is counted
    with why, by channel. /mod purge and a deletion's first step share it."""
    deleted = gone = total = 0
    failed: dict[int, str] = {}
    for post in found:
        total += 1
        result = await delete(post.channel_id, post.message_id)
        if result.failed:
            failed[post.channel_id] = result.failed
            continue
        gone += result.gone_before
        deleted += not result.gone_before
        await posts.unlink_message(post.message_id)
    return PurgeOutcome(deleted, gone, failed, total)
