"""Controls used on a job (``upscale-2``, ``reroll``), claimed once: a repeated or replayed
reaction finds the job the first one started instead of starting another."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from storage.engine import SessionFactory
from storage.models import Job, JobAction, JobStatus, utcnow
from storage.records import JobRecord, job_record

# A control whose job ended without images may be used again (a rate limit passed, a list changed).
_RETRYABLE = {JobStatus.REFUSED, JobStatus.BLOCKED, JobStatus.FAILED, JobStatus.CANCELLED}
# A claim whose job was never recorded (the process died in between) is free again after this.
CLAIM_TIMEOUT = timedelta(seconds=60)


@dataclass(frozen=True)
class ActionClaim:
    """The answer to "may this control start a job?": ``claimed``, or the job it already started
    (None while another claim is between its claim and its record)."""

    claimed: bool
    existing: JobRecord | None = None
    claimed_at: datetime | None = None  # a claim's own mark, for action_started


class ActionClaims:
    """One row per job and control; the unique row and conditional updates make a claim hold
    across processes."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def claim_action(
        self, parent_job_id: int, action: str, user_id: int | None
    ) -> ActionClaim:
        """Claims a control on a job, once: a second claim gets the job the first one started.

        A control whose job ended without images (refused, blocked, failed, cancelled) can be
        claimed again.
        """
        now = utcnow()
        try:
            async with self._sessions.begin() as session:
                row = await session.scalar(
                    select(JobAction).where(
                        JobAction.parent_job_id == parent_job_id, JobAction.action == action
                    )
                )
                if row is None:
                    session.add(
                        JobAction(
                            parent_job_id=parent_job_id,
                            action=action,
                            user_id=user_id,
                            claimed_at=now,
                        )
                    )
                    return ActionClaim(True, claimed_at=now)
                child = (
                    None if row.child_job_id is None else await session.get(Job, row.child_job_id)
                )
                free = (
                    JobStatus(child.status) in _RETRYABLE
                    if child is not None
                    else row.claimed_at < now - CLAIM_TIMEOUT
                )
                if not free:
                    return ActionClaim(False, None if child is None else job_record(child))
                # Whoever changes the row as it was read wins; a concurrent retry loses.
                taken = await session.execute(
                    update(JobAction)
                    .where(
                        JobAction.id == row.id,
                        JobAction.claimed_at == row.claimed_at,
                        JobAction.child_job_id.is_(None)
                        if row.child_job_id is None
                        else JobAction.child_job_id == row.child_job_id,
                    )
                    .values(child_job_id=None, user_id=user_id, claimed_at=now)
                    .execution_options(synchronize_session=False)
                )
                won = taken.rowcount == 1  # type: ignore[attr-defined]
                return ActionClaim(won, claimed_at=now if won else None)
        except IntegrityError:  # another process inserted the same claim first
            return ActionClaim(False)

    async def action_started(
        self, parent_job_id: int, action: str, child_job_id: int, claimed_at: datetime
    ) -> bool:
        """The claimed control's job is recorded (whatever its status). False when the claim was
        taken over meanwhile (it outlived CLAIM_TIMEOUT): the row keeps the newer claim."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(JobAction)
                .where(
                    JobAction.parent_job_id == parent_job_id,
                    JobAction.action == action,
                    JobAction.claimed_at == claimed_at,
                )
                .values(child_job_id=child_job_id)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def release_action(self, parent_job_id: int, action: str) -> None:
        """The claimed control started nothing (its options are no longer allowed)."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(JobAction).where(
                    JobAction.parent_job_id == parent_job_id,
                    JobAction.action == action,
                    JobAction.child_job_id.is_(None),
                )
            )
