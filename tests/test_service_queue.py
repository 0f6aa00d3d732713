"""The queue under the service: refusals recorded with their reason and wait, the owner's cancel,
and nothing lost when the process dies: queued jobs resume, running ones are retried once."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from bot.app import open_service, open_storage
from bot.imagine.errors import NotYours
from bot.imagine.outcomes import ImagineOutcome
from bot.imagine.records import new_job, options_of, requested_of, verdict_of
from bot.imagine.service import ImagineService
from bot.imagine.types import Derived, Requester
from bot.settings import Settings
from generation.limits import Limits
from generation.options import UPSCALE_FACTOR, GenerationOptions, RequestedOptions
from generation.protocol import Progress
from moderation.policy import Disposition
from moderation.prompts import PromptVerdict
from storage import migrations
from storage.audit import AuditLog
from storage.engine import SessionFactory
from storage.models import JobKind, JobStatus, Verdict
from storage.records import NewJob

MEMBER = Requester(source="test", guild_id=7, channel_id=70, user_id=700)


async def test_a_request_over_a_limit_is_refused_with_the_wait_and_recorded(
    service: ImagineService,
) -> None:
    # A tenth of a standard image saved up: one 64 px grid (1/16) passes, not two; the rate is
    # slow enough that the seconds the first job takes do not change the wait.
    service.admission.bot_limits = dataclasses.replace(
        service.bot_limits, rates=Limits(user_units_per_hour=0.01, user_burst=0.1)
    )
    first = await service.imagine(RequestedOptions(prompt="a red circle"), MEMBER)
    assert first.status is JobStatus.SUCCEEDED
    second = await service.imagine(RequestedOptions(prompt="a blue square"), MEMBER)
    assert second.status is JobStatus.REFUSED
    # (1/16 - 0.0375) × 3600 / 0.01 = 9000 s, less the seconds the first job took.
    assert second.retry_after is not None
    assert 8800 < second.retry_after <= 9000
    assert second.error is not None
    assert re.fullmatch(
        r"you can make this in 1[45]\d min( \d+ s)? \(your limit is 0\.01 standard images "
        r"an hour\)",
        second.error,
    ), second.error
    record = await service.storage.audit.get_job(second.job_id)
    assert record is not None
    assert (record.status, record.error, record.prompt) == (
        JobStatus.REFUSED,
        second.error,
        "a blue square",
    )


async def test_a_guilds_own_limits_apply(service: ImagineService) -> None:
    await service.storage.guild_settings.update(7, max_jobs_per_user=1)
    busy = asyncio.Event()
    first = asyncio.create_task(
        service.imagine(
            RequestedOptions(prompt="a red circle", steps=30),
            MEMBER,
            on_progress=lambda progress: busy.set(),
        )
    )
    await asyncio.wait_for(busy.wait(), 120)
    second = await service.imagine(RequestedOptions(prompt="a blue square"), MEMBER)
    assert second.status is JobStatus.REFUSED
    assert second.error == (
        "you already have 1 job queued or running (at most 1); wait for one to finish"
    )
    other_guild = await service.imagine(
        RequestedOptions(prompt="a blue square", variants=1),
        Requester(source="test", guild_id=8, user_id=700),
    )
    assert other_guild.status is JobStatus.SUCCEEDED
    assert (await first).status is JobStatus.SUCCEEDED


async def test_only_the_owner_cancels_and_a_running_job_stops_between_steps(
    service: ImagineService,
) -> None:
    steps: list[Progress] = []
    running = asyncio.Event()

    def seen(progress: Progress) -> None:
        steps.append(progress)
        running.set()

    task = asyncio.create_task(
        service.imagine(
            RequestedOptions(prompt="a green triangle", steps=40), MEMBER, on_progress=seen
        )
    )
    await asyncio.wait_for(running.wait(), 120)
    [record] = await service.storage.audit.list_jobs()
    with pytest.raises(NotYours, match=f"job {record.id} is not yours to cancel"):
        await service.cancel(record.id, user_id=701)
    with pytest.raises(NotYours, match="there is no job 999"):
        await service.cancel(999, user_id=700)
    assert await service.cancel(record.id, user_id=700) == f"job {record.id} stops at its next step"
    outcome = await task
    assert outcome.status is JobStatus.CANCELLED
    assert outcome.error is not None
    assert outcome.error.startswith("cancelled at step ")
    assert steps[-1].step < 40
    stored = await service.storage.audit.get_job(record.id)
    assert stored is not None
    assert (stored.status, stored.error) == (JobStatus.CANCELLED, outcome.error)
    assert (
        await service.cancel(record.id, user_id=700) == f"job {record.id} already ended: cancelled"
    )


def _cli_env(settings: Settings) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SDBOT_")} | {
        "SDBOT_MODEL": settings.model,
        "SDBOT_DATABASE_URL": settings.effective_database_url(),
        "SDBOT_DATA_DIR": str(settings.data_dir),
        "SDBOT_DEVICE": "cpu",
    }


async def _wait_for_status(audit: AuditLog, status: JobStatus) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = await audit.list_jobs()
        if jobs and jobs[0].status is status:
            return jobs[0].id
        await asyncio.sleep(0.1)
    raise AssertionError(f"no job reached {status.value}")


def _queued(prompt: str, user: int) -> NewJob:
    return NewJob(
        source="discord",
        guild_id=7,
        channel_id=70,
        user_id=user,
        prompt=prompt,
        negative_prompt="",
        steps=4,
        guidance_scale=3.0,
        width=64,
        height=64,
        variants=2,
        scheduler="dpmpp",
        model="embedded",
        seeds=(5, 6),
        verdict=Verdict.ALLOWED,
    )


async def test_after_a_crash_queued_jobs_resume_and_running_ones_are_retried_once(
    settings: Settings,
) -> None:
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    # A real `sdbot imagine`, killed (process group and its worker) while its job runs.
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bot", "imagine", "a red circle", "--steps", "50", "--seed", "9"],
        env=_cli_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    async with open_storage(settings) as storage:
        crashed = await _wait_for_status(storage.audit, JobStatus.RUNNING)
        os.killpg(process.pid, signal.SIGKILL)
        assert await asyncio.wait_for(process.wait(), 30) == -signal.SIGKILL
        # Two more open jobs: one that never started, one whose worker died twice already.
        queued = await storage.audit.create_job(_queued("a blue square", 701))
        twice = await storage.audit.create_job(_queued("a green triangle", 702))
        await storage.audit.mark_running(twice)
        await storage.audit.mark_running(twice)

    outcomes: dict[int, ImagineOutcome] = {}
    all_in = asyncio.Event()

    def delivered(outcome: ImagineOutcome) -> None:
        outcomes[outcome.job_id] = outcome
        if len(outcomes) == 2:
            all_in.set()

    async with open_storage(settings) as storage, open_service(settings, storage) as service:
        assert await service.recover(delivered) == 2
        await asyncio.wait_for(all_in.wait(), 180)
        jobs = {job.id: job for job in await storage.audit.list_jobs()}

    assert outcomes[crashed].status is JobStatus.SUCCEEDED
    assert outcomes[crashed].seeds == (9, 10, 11, 12)
    assert outcomes[queued].status is JobStatus.SUCCEEDED
    assert len(outcomes[queued].images) == 2
    assert (jobs[crashed].status, jobs[crashed].attempts) == (JobStatus.SUCCEEDED, 2)
    assert (jobs[queued].status, jobs[queued].attempts) == (JobStatus.SUCCEEDED, 1)
    assert jobs[twice].status is JobStatus.FAILED
    assert jobs[twice].error == (
        "stopped 2 times while running (the bot or its worker went away); not retried again"
    )
    assert len(jobs[crashed].images) == 5  # four variants and the grid, recorded once


async def test_a_jobs_record_gives_back_the_options_and_requester_it_was_made_of(
    sessions: SessionFactory,
) -> None:
    """The record types meet by field name (no hand-copied lists): what a request is recorded
    with comes back as the options a recovered job runs with and a reroll asks for."""
    audit = AuditLog(sessions)
    options = GenerationOptions("a red circle", "blurry", (5, 6), 12, 4.5, 64, 96, "euler")
    asker = Requester("discord", guild_id=7, channel_id=70, user_id=700, channel_nsfw=True)
    verdict = PromptVerdict(True, (), force_safe=True, safe_reasons=("'nude' is force-safe",))
    parent_id = await audit.create_job(new_job(asker, options, verdict, "embedded"))
    upscale = Derived(JobKind.UPSCALE, parent_id, 2, UPSCALE_FACTOR)
    single = GenerationOptions("a red circle", "blurry", (6,), 12, 4.5, 64, 96, "euler", 2)
    child_id = await audit.create_job(new_job(asker, single, verdict, "embedded", upscale))

    parent, child = await audit.get_job(parent_id), await audit.get_job(child_id)
    assert parent is not None
    assert child is not None
    assert options_of(parent) == options
    assert options_of(child) == single
    assert requested_of(parent) == RequestedOptions(
        "a red circle", "blurry", None, 12, 4.5, 64, 96, variants=2, scheduler="euler"
    )
    assert verdict_of(parent) == PromptVerdict(True, (), True, ("'nude' is force-safe",))
    assert (parent.source, parent.guild_id, parent.channel_id, parent.user_id) == (
        "discord",
        7,
        70,
        700,
    )
    assert (parent.channel_nsfw, parent.model, parent.verdict) == (
        True,
        "embedded",
        Verdict.FORCE_SAFE.value,
    )
    assert (parent.kind, parent.parent_job_id, parent.parent_variant) == ("imagine", None, None)
    assert (child.kind, child.parent_job_id, child.parent_variant) == ("upscale", parent_id, 2)


async def test_the_image_policy_is_fixed_when_the_request_is_admitted(settings: Settings) -> None:
    """The guild's settings are read once, at admission: a job's pictures follow the policy of
    that moment, whatever the moderators change while it waits."""
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    flagging = settings.model_copy(update={"nsfw_threshold": 1e-9})  # every picture is flagged
    nsfw_channel = Requester(source="test", guild_id=7, channel_id=70, channel_nsfw=True)
    async with open_storage(flagging) as storage, open_service(flagging, storage) as service:
        await storage.guild_settings.update(7, nsfw_policy="spoiler")
        submitted = await service.submit(
            RequestedOptions(prompt="a red circle", variants=1, seed=1), nsfw_channel
        )
        assert not isinstance(submitted, ImagineOutcome)
        await storage.guild_settings.update(7, nsfw_policy="block")  # while it waits
        outcome = await service.follow_submitted(submitted)
    assert outcome.status is JobStatus.SUCCEEDED
    assert [image.disposition for image in outcome.images] == [Disposition.SPOILER]
