"""Which Discord messages show which job: reactions and deletions are looked up here."""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from sqlalchemy import Select, delete, select

from storage.engine import SessionFactory
from storage.models import Job, PostedMessage
from storage.records import JobRecord, job_record


class MemberPost(NamedTuple):
    """One message posted for a member's job, and where: what taking it down needs."""

    channel_id: int
    message_id: int
    job_id: int
    guild_id: int | None  # the job's guild; None: a direct message


class PostedMessages:
    """Links between posted messages and the jobs they show. Every method is one short unit
    of work."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def link_message(
        self,
        message_id: int,
        job_id: int,
        *,
        channel_id: int,
        guild_id: int | None,
        variant: int | None = None,
    ) -> None:
        """Links a message to the job it shows; a status message that became the result is
        linked again (its variant may change)."""
        async with self._sessions.begin() as session:
            posted = await session.get(PostedMessage, message_id)
            if posted is None:
                session.add(
                    PostedMessage(
                        message_id=message_id,
                        job_id=job_id,
                        channel_id=channel_id,
                        guild_id=guild_id,
                        variant=variant,
                    )
                )
            else:
                posted.job_id, posted.channel_id, posted.variant = job_id, channel_id, variant

    async def job_for_message(self, message_id: int) -> tuple[JobRecord, int | None] | None:
        """The job a posted message shows, and the variant when it shows one."""
        async with self._sessions() as session:
            posted = await session.get(PostedMessage, message_id)
            if posted is None:
                return None
            job = await session.get(Job, posted.job_id)
            assert job is not None  # the foreign key guarantees it
            return job_record(job), posted.variant

    async def messages_for_job(self, job_id: int) -> list[tuple[int, int]]:
        """The (channel id, message id) of every posted message that shows the job, oldest
        first."""
        query = (
            select(PostedMessage)
            .where(PostedMessage.job_id == job_id)
            .order_by(PostedMessage.created_at, PostedMessage.message_id)
        )
        async with self._sessions() as session:
            return [(row.channel_id, row.message_id) for row in await session.scalars(query)]

    async def posts_for_user(self, guild_id: int, user_id: int) -> list[tuple[int, int, int]]:
        """(channel id, message id, job id) of every message posted for a member's jobs in a
        guild, oldest first."""
        found = await self.member_posts(user_id, guild_id=guild_id)
        return [(post.channel_id, post.message_id, post.job_id) for post in found]

    async def member_posts(self, user_id: int, *, guild_id: int | None) -> list[MemberPost]:
        """Every message posted for a member's jobs in a guild (``guild_id`` None: everywhere,
        every guild and direct messages), oldest first. Found through the jobs' member, so
        only while the jobs still name them: a deletion takes the posts down before it forgets
        the member."""
        query = self._posts().where(Job.user_id == user_id)
        if guild_id is not None:
            query = query.where(Job.guild_id == guild_id)
        async with self._sessions() as session:
            return [MemberPost(*row) for row in await session.execute(query)]

    async def posts_for_jobs(self, job_ids: Collection[int]) -> list[MemberPost]:
        """Every message posted for these jobs, oldest first (whoever they name now)."""
        if not job_ids:
            return []
        query = self._posts().where(Job.id.in_(sorted(job_ids)))
        async with self._sessions() as session:
            return [MemberPost(*row) for row in await session.execute(query)]

    @staticmethod
    def _posts() -> Select[int, int, int, int | None]:
        """Posted messages with their job's guild, oldest first: a MemberPost a row."""
        return (
            select(
                PostedMessage.channel_id,
                PostedMessage.message_id,
                PostedMessage.job_id,
                Job.guild_id,
            )
            .join(Job, Job.id == PostedMessage.job_id)
            .order_by(PostedMessage.created_at, PostedMessage.message_id)
        )

    async def unlink_message(self, message_id: int) -> None:
        """The message was deleted: reactions on it mean nothing any more."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(PostedMessage).where(PostedMessage.message_id == message_id)
            )
