"""``ImagineService``: the imagine path's rooms put together, for the Discord bot and the CLI.

Each concern has its room (``admission``, ``following``, ``controls``, ``recovery``, with the
``gate``, the ``pictures``, the ``inputs`` checker of pictures given in, the ``describer`` and
this process's ``leases``); this class only composes them. The
repositories are ``service.storage``'s, the bot's limits ``service.bot_limits``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.access import Control
from bot.guild_limits import BotLimits
from bot.imagine.admission import Admission
from bot.imagine.controls import Controls
from bot.imagine.describe import Describer
from bot.imagine.following import Following
from bot.imagine.gate import Gate, GateRefusal
from bot.imagine.inputs import InputChecker
from bot.imagine.leases import LeaseKeeper
from bot.imagine.outcomes import (
    AlreadyStarted,
    ImagineOutcome,
    OutcomeCallback,
    QueuedCallback,
    Submitted,
)
from bot.imagine.pictures import Pictures
from bot.imagine.recovery import Recovery
from bot.imagine.types import Derived, GuildLimits, ImagineConfig, PicturesIn, Requester
from common import logs
from generation.options import RequestedOptions
from generation.queue import JobQueue
from generation.queue.contract import ProgressCallback
from moderation.lists import PromptRules
from storage.guild_settings import GuildSettingsRecord
from storage.pictures import SweepReport
from storage.records import JobRecord
from storage.repositories import Storage


class ImagineService:
    """The moderated path of one request, shared by the CLI and the Discord bot:
    validate → prompt rules → audit record → worker → image policy → grid → outcome. Every
    request that passes validation gets a record, and every record one terminal status."""

    def __init__(
        self, storage: Storage, queue: JobQueue, config: ImagineConfig, rules: PromptRules
    ) -> None:
        self.storage = storage
        self.queue = queue
        self.config = config
        self.leases = LeaseKeeper(storage.leases, config.lease_s)
        self.pictures = Pictures(config.output_dir)
        self.gatekeeper = Gate(storage.bans, direct_messages=config.direct_messages)
        self.inputs = InputChecker(
            storage, max_bytes=config.max_input_bytes, max_pixels=config.max_input_pixels
        )
        self.admission = Admission(
            storage,
            queue,
            self.leases,
            self.gatekeeper,
            bot_limits=BotLimits(
                config.limits,
                config.defaults,
                config.rates,
                config.nsfw_threshold,
                catalog=config.catalog,
            ),
            nsfw_strict_threshold=config.nsfw_strict_threshold,
            catalog=config.catalog,
            rules=rules,
            inputs=self.inputs,
        )
        self.describer = Describer(
            storage,
            self.inputs,
            config.catalog,
            admission=self.admission,
            caption_model=config.caption_model,
        )
        self.following = Following(storage, queue, self.pictures)
        self.controls = Controls(storage, self.admission)
        self.recovery = Recovery(
            storage,
            queue,
            self.leases,
            self.following,
            self.pictures,
            self.admission.image_policy,
            config.catalog,
        )

    # --- the request's path -------------------------------------------------------------------

    async def imagine(
        self,
        requested: RequestedOptions,
        requester: Requester,
        *,
        on_progress: ProgressCallback | None = None,
        on_queued: QueuedCallback | None = None,
        pictures: PicturesIn | None = None,
    ) -> ImagineOutcome:
        """Runs the whole path. Raises InvalidOption (before any record) for bad options or a
        bad picture.

        Cancelling the awaiting task cancels the job (recorded ``cancelled``), unless the
        service is closing: then the job stays open, to be resumed at the next start.
        """
        submitted = await self.submit(requested, requester, pictures=pictures)
        if isinstance(submitted, ImagineOutcome):
            return submitted
        return await self.follow_submitted(submitted, on_progress=on_progress, on_queued=on_queued)

    async def submit(
        self,
        requested: RequestedOptions,
        requester: Requester,
        *,
        derived: Derived | None = None,
        pictures: PicturesIn | None = None,
    ) -> Submitted | ImagineOutcome:
        """Checks, records and queues a request; fast (no model). Blocked and refused requests
        come back as their final outcome, an accepted one as its job to follow. ``pictures``:
        img2img's image, /edit's image and mask (an edit), a ControlNet's picture (see
        :meth:`Admission.submit`). Its lines carry the requester's guild (and the job's id
        once admission binds it)."""
        with logs.bound(guild=requester.guild_id):
            return await self.admission.submit(
                requested, requester, derived=derived, pictures=pictures
            )

    async def follow_submitted(
        self,
        submitted: Submitted,
        *,
        on_progress: ProgressCallback | None = None,
        on_queued: QueuedCallback | None = None,
    ) -> ImagineOutcome:
        """Follows a submitted job to its outcome, under the image policy fixed at admission."""
        return await self.following.follow(
            submitted.job,
            submitted.handle,
            submitted.verdict,
            on_progress=on_progress,
            on_queued=on_queued,
            started=submitted.started,
        )

    async def gate(
        self, requester: Requester, settings: GuildSettingsRecord | None
    ) -> GateRefusal | None:
        """What the guild's moderators decided stands in the way of this member here."""
        return await self.gatekeeper.check(requester, settings)

    async def use_control(
        self,
        job_id: int,
        variant: int | None,
        requester: Requester,
        *,
        control: Control | None = None,
        vary: str | None = None,
    ) -> Submitted | ImagineOutcome | AlreadyStarted:
        """Upscale ``variant`` or reroll (None) a finished job, or with ``control`` vary a
        variant (``vary``: subtle or strong, else the guild's) or zoom out an upscale: see
        :meth:`Controls.use`."""
        with logs.bound(guild=requester.guild_id):
            return await self.controls.use(job_id, variant, requester, control=control, vary=vary)

    async def cancel(self, job_id: int, user_id: int | None) -> str:
        """The owner cancels a job; raises NotYours for someone else's."""
        return await self.following.cancel(job_id, user_id)

    async def stop(self, job_id: int, why: str) -> str:
        """Cancels a job in the queue; ``why`` ends the reason its record and post give."""
        return await self.following.stop(job_id, why)

    async def limits_here(self, guild_id: int | None) -> GuildLimits:
        return await self.admission.limits_here(guild_id)

    # --- restarts and shutdown ----------------------------------------------------------------

    async def recover(
        self,
        on_outcome: OutcomeCallback,
        on_held: Callable[[JobRecord], None] | None = None,
    ) -> int:
        """At start-up: every job a stopped process left open is resumed or ended."""
        return await self.recovery.recover(on_outcome, on_held)

    async def wait_recovered(self) -> None:
        await self.recovery.wait()

    def recovered_deliveries(self, job_ids: set[int]) -> list[asyncio.Task[None]]:
        return self.recovery.deliveries_of(job_ids)

    async def sweep_files(self) -> SweepReport:
        return await self.recovery.sweep_files()

    async def stop_taking_work(self) -> set[int]:
        """The first step of a graceful stop: new requests get :class:`ShuttingDown`, queued
        jobs stay queued (recorded, resumed at the next start). Returns the ids of the jobs
        running now, which the caller may let finish."""
        self.admission.stop_taking_work()
        return await self.queue.hold() | self.following.running

    def leave_jobs_open(self) -> None:
        """The process is stopping: a request whose task is cancelled from now on leaves its
        job open, for the next start, instead of cancelling it."""
        self.following.leave_jobs_open()

    async def close(self) -> None:
        """Stops taking work; open jobs stay open in the audit log for the next start."""
        self.leave_jobs_open()
        await self.recovery.close()
        await self.queue.close()
        await self.leases.release()

    # --- what it is configured with -----------------------------------------------------------

    @property
    def bot_limits(self) -> BotLimits:
        """What the bot allows everywhere (a guild's settings may only tighten it)."""
        return self.admission.bot_limits

    @property
    def model_label(self) -> str:
        """The default model as shown to members: its catalog name, never a local path."""
        return self.config.catalog.default_model
