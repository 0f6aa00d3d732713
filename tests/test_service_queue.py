"""The queue under the service: refusals recorded with their reason and wait, the owner's cancel,
and nothing lost when the process dies: queued jobs resume, running ones are retried once."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from safetensors.numpy import save_file

from bot.app import open_service, open_storage
from bot.cli import EXIT_OK
from bot.cli.audit import run_trace
from bot.guild_admin import GuildAdmin, InvalidSetting
from bot.imagine.admission import check_request
from bot.imagine.errors import NotYours
from bot.imagine.outcomes import ImagineOutcome, Refusal, Submitted
from bot.imagine.records import new_job, options_of, requested_of, verdict_of
from bot.imagine.service import ImagineService
from bot.imagine.types import Derived, Requester
from bot.settings import Settings
from generation.families import safetensors_header
from generation.limits import Limits
from generation.options import UPSCALE_FACTOR, GenerationOptions, LoraChoice, RequestedOptions
from generation.protocol import Progress
from moderation.lists import PromptRules
from moderation.policy import Disposition
from moderation.prompts import PromptVerdict, check_prompt
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
    loras = (LoraChoice("outline", 0.8), LoraChoice("stripes", -1.25))
    options = GenerationOptions(
        "a red circle", "blurry", (5, 6), 12, 4.5, 64, 96, "euler", model="night", loras=loras
    )
    asker = Requester("discord", guild_id=7, channel_id=70, user_id=700, channel_nsfw=True)
    verdict = PromptVerdict(True, (), force_safe=True, safe_reasons=("'nude' is force-safe",))
    parent_id = await audit.create_job(
        new_job(asker, options, verdict, embeddings=("sdbot-noise",))
    )
    upscale = Derived(JobKind.UPSCALE, parent_id, 2, UPSCALE_FACTOR)
    single = dataclasses.replace(options, seeds=(6,), upscale=2)
    child_id = await audit.create_job(new_job(asker, single, verdict, derived=upscale))

    parent, child = await audit.get_job(parent_id), await audit.get_job(child_id)
    assert parent is not None
    assert child is not None
    assert options_of(parent) == options
    assert options_of(child) == single
    assert requested_of(parent) == RequestedOptions(
        "a red circle", "blurry", None, 12, 4.5, 64, 96, 2, "euler", model="night", loras=loras
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
        "night",
        Verdict.FORCE_SAFE.value,
    )
    assert (parent.loras, parent.embeddings) == (("outline:0.8", "stripes:-1.25"), ("sdbot-noise",))
    assert (child.model, child.loras, child.embeddings) == ("night", parent.loras, ())
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


# --- models and LoRAs ---------------------------------------------------------------------------


def write_lora(path: Path, model_dir: Path, rank: int = 4) -> None:
    """A LoRA for the embedded model's UNet attention in diffusers' own file format (what
    ``save_lora_weights`` writes), random, without torch: its shapes from the UNet's header."""
    header = safetensors_header(model_dir / "unet" / "diffusion_pytorch_model.safetensors")
    rng = np.random.default_rng(0)
    tensors = {}
    for key, entry in header.items():
        if re.search(r"\.(to_q|to_k|to_v|to_out\.0)\.weight$", key):
            out, width = cast("list[int]", entry["shape"])
            stem = "unet." + key.removesuffix(".weight")
            tensors[f"{stem}.lora.down.weight"] = rng.normal(0, 0.1, (rank, width)).astype("f4")
            tensors[f"{stem}.lora.up.weight"] = rng.normal(0, 0.1, (out, rank)).astype("f4")
    save_file(tensors, str(path), metadata={"format": "pt"})


@pytest.fixture
def offered(settings: Settings, model_dir: Path, tmp_path: Path) -> Settings:
    """Settings with an operator's catalog: the embedded model as `embedded` (the default) and
    as `night` (age-restricted channels only), one LoRA, `tint`, and one embedding, `glow`."""
    models = tmp_path / "models.toml"
    models.write_text(
        f'[[model]]\nname = "embedded"\nsource = "{model_dir}"\ndefault = true\n\n'
        f'[[model]]\nname = "night"\nsource = "{model_dir}"\nnsfw_only = true\n'
    )
    loras = tmp_path / "loras"
    loras.mkdir()
    write_lora(loras / "tint.safetensors", model_dir)
    embeddings = tmp_path / "embeddings"
    embeddings.mkdir()
    glow = np.random.default_rng(1).normal(0, 0.5, (1, 128)).astype("f4")  # the encoder's width
    save_file({"emb_params": glow}, str(embeddings / "glow.safetensors"))
    return settings.model_copy(
        update={"models_file": models, "lora_dir": loras, "embedding_dir": embeddings}
    )


@pytest.fixture
async def styled(offered: Settings) -> AsyncIterator[ImagineService]:
    """The service on the ``offered`` catalog."""
    await asyncio.to_thread(migrations.upgrade, offered.effective_database_url())
    async with open_storage(offered) as storage, open_service(offered, storage) as service:
        yield service


NSFW_ROOM = dataclasses.replace(MEMBER, channel_id=71, channel_nsfw=True)


async def test_a_job_records_its_model_and_loras_and_its_controls_keep_them(
    styled: ImagineService, offered: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = await styled.imagine(
        RequestedOptions(
            prompt="a red circle <lora:tint:0.5>", negative_prompt="glow", variants=2, steps=4
        ),
        MEMBER,
    )
    assert outcome.status is JobStatus.SUCCEEDED, outcome.error
    parent = await styled.storage.audit.get_job(outcome.job_id)
    assert parent is not None
    assert (parent.prompt, parent.model, parent.loras) == (
        "a red circle",
        "embedded",
        ("tint:0.5",),
    )
    picture = outcome.images[0].path
    assert picture is not None
    assert await run_trace(argparse.Namespace(image=picture, json=False), offered) == EXIT_OK
    assert parent.embeddings == ("glow",)
    out = capsys.readouterr().out  # sdbot trace
    assert "  model     embedded · LoRAs tint:0.5 · embeddings glow\n" in out

    for variant, kind in ((None, JobKind.REROLL), (2, JobKind.UPSCALE)):
        started = await styled.use_control(outcome.job_id, variant, MEMBER)
        assert isinstance(started, Submitted), started
        child = await styled.follow_submitted(started)
        assert child.status is JobStatus.SUCCEEDED, child.error
        record = await styled.storage.audit.get_job(child.job_id)
        assert record is not None
        assert (record.kind, record.model, record.loras) == (kind, "embedded", ("tint:0.5",))
        assert record.embeddings == ("glow",)
        assert started.job.request.options.loras == (LoraChoice("tint", 0.5),)


async def test_a_guild_allowing_other_models_or_loras_refuses_with_what_it_allows(
    styled: ImagineService,
) -> None:
    admin = GuildAdmin.for_service(styled)
    with pytest.raises(InvalidSetting, match="sdbot has no model 'sdxl'; its models: embedded, n"):
        await admin.change_settings(7, 1, {"allowed_models": "sdxl"})
    await admin.change_settings(7, 1, {"allowed_models": "night", "allowed_loras": "none"})

    refused = await styled.imagine(
        RequestedOptions(prompt="a red circle", model="embedded", variants=1), NSFW_ROOM
    )
    assert (refused.status, refused.refusal) == (JobStatus.REFUSED, Refusal.MODEL)
    assert refused.error == "this server allows the models night, not 'embedded'"
    no_lora = await styled.imagine(
        RequestedOptions(prompt="a red circle", model="night", loras=(LoraChoice("tint"),)),
        NSFW_ROOM,
    )
    assert no_lora.error == "this server allows no LoRAs, not 'tint'"
    records = {job.id: job for job in await styled.storage.audit.list_jobs()}
    assert (records[refused.job_id].status, records[refused.job_id].error) == (
        JobStatus.REFUSED,
        refused.error,
    )
    assert (records[no_lora.job_id].model, records[no_lora.job_id].loras) == ("night", ("tint:1",))
    elsewhere = await styled.submit(
        RequestedOptions(prompt="a red circle", model="embedded", variants=1),
        dataclasses.replace(MEMBER, guild_id=8),
    )
    assert isinstance(elsewhere, Submitted)  # another guild's list is its own
    assert (await styled.follow_submitted(elsewhere)).status is JobStatus.SUCCEEDED
    # A request that names no model gets the server's own first model.
    unnamed = await styled.submit(RequestedOptions(prompt="a red circle", variants=1), NSFW_ROOM)
    assert isinstance(unnamed, Submitted)
    assert unnamed.job.request.options.model == "night"
    assert (await styled.follow_submitted(unnamed)).status is JobStatus.SUCCEEDED


async def test_an_nsfw_only_model_draws_only_in_age_restricted_channels(
    styled: ImagineService,
) -> None:
    asked = RequestedOptions(prompt="a red circle", model="night", variants=1, steps=4)
    refused = await styled.imagine(asked, MEMBER)
    assert (refused.status, refused.refusal) == (JobStatus.REFUSED, Refusal.MODEL)
    assert refused.error == "the model 'night' is only for age-restricted (NSFW) channels"
    drawn = await styled.imagine(asked, NSFW_ROOM)
    assert drawn.status is JobStatus.SUCCEEDED, drawn.error
    record = await styled.storage.audit.get_job(drawn.job_id)
    assert record is not None
    assert (record.model, record.channel_nsfw) == ("night", True)
    limits = await styled.limits_here(7)
    assert [m.name for m in limits.models(channel_nsfw=False)] == ["embedded"]


async def test_words_split_by_weight_syntax_are_read_whole(styled: ImagineService) -> None:
    """`(nu:1.2)de` is drawn as "nude": the rules read the plain words beside the prompt."""
    hidden = "a (nu:1.2)de figure"
    lists = dataclasses.replace(PromptRules.default(), classifier=None)
    assert check_prompt(hidden, lists).allowed  # the written text alone passes the lists
    outcome = await styled.imagine(RequestedOptions(prompt=hidden, variants=1), MEMBER)
    assert outcome.status is JobStatus.BLOCKED
    record = await styled.storage.audit.get_job(outcome.job_id)
    assert record is not None
    assert (record.status, record.prompt) == (JobStatus.BLOCKED, hidden)
    assert any("'nude'" in reason for reason in record.verdict_reasons), record.verdict_reasons


async def test_a_job_recorded_before_the_catalog_runs_on_its_model(
    service: ImagineService, model_dir: Path
) -> None:
    """Before migration 0007 a job named its model by its source (SDBOT_MODEL as set): one
    left open by the upgrade's restart resumes, and a finished one is rerolled, on the
    catalog's entry for that source."""
    options = GenerationOptions("a red circle", "", (5,), 4, 7.0, 64, 64, "default")
    old = new_job(MEMBER, options, PromptVerdict(True), model=str(model_dir))
    audit = service.storage.audit
    left_open = await audit.create_job(old)
    outcomes: list[ImagineOutcome] = []
    assert await service.recover(outcomes.append) == 1
    await service.wait_recovered()
    await asyncio.gather(*service.recovered_deliveries({left_open}))
    assert [(o.job_id, o.status) for o in outcomes] == [(left_open, JobStatus.SUCCEEDED)]

    started = await service.use_control(left_open, None, MEMBER)
    assert isinstance(started, Submitted), started
    assert started.job.request.options.model == "embedded"
    assert (await service.follow_submitted(started)).status is JobStatus.SUCCEEDED


def test_the_rules_read_the_plain_words_for_force_safe_too() -> None:
    rules = PromptRules.default()

    def options(prompt: str, negative: str = "") -> GenerationOptions:
        return GenerationOptions(prompt, negative, (1,), 4, 7.0, 64, 64, "default")

    hidden = check_request(options("a (bi:1.2)kini girl"), rules)
    assert check_prompt("a (bi:1.2)kini girl", rules).force_safe is False
    assert (hidden.allowed, hidden.force_safe) == (True, True)
    assert hidden.safe_reasons == ("'bikini' is on the force-safe list (default list)",)
    assert check_request(options("a red circle", "(nu:1.3)de"), rules).allowed  # negative: fine
    plain = check_request(options("a [red] circle"), rules)
    # Both readings' classifier scores are kept (the higher of each label); nothing else is said.
    assert plain == PromptVerdict(True, classifier_scores=plain.classifier_scores)
