"""Image safety through the real worker: the policy by guild and channel, the strict check for
force-safe prompts, the model's own checker, and what the audit log keeps of each image."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.app import Storage, open_service, open_storage
from bot.service import ImagineService, Requester
from bot.settings import Settings
from generation.images import placeholder
from generation.options import RequestedOptions
from moderation.policy import Disposition
from storage import migrations
from storage.models import JobStatus, Verdict

GUILD = 1_100_000_000_000_000_001
CLI = Requester(source="test")
NSFW_CHANNEL = Requester(source="test", guild_id=GUILD, channel_id=7, channel_nsfw=True)


@contextlib.asynccontextmanager
async def _open(settings: Settings) -> AsyncIterator[tuple[Storage, ImagineService]]:
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    async with open_storage(settings) as storage, open_service(settings, storage) as service:
        yield storage, service


@pytest.fixture
async def everything_flagged(settings: Settings) -> AsyncIterator[tuple[Storage, ImagineService]]:
    async with _open(settings.model_copy(update={"nsfw_threshold": 1e-9})) as opened:
        yield opened


def _files(settings: Settings, job_id: int) -> list[str]:
    return sorted(p.name for p in (settings.effective_output_dir() / f"job-{job_id}").iterdir())


async def test_flagged_images_follow_the_guild_and_channel(
    everything_flagged: tuple[Storage, ImagineService], settings: Settings
) -> None:
    storage, service = everything_flagged
    request = RequestedOptions(prompt="a red circle", variants=2, seed=1)

    # 1. Outside an NSFW channel a flagged image is never shown: a placeholder says why.
    outcome = await service.imagine(request, CLI)
    assert outcome.status is JobStatus.SUCCEEDED
    assert [image.disposition for image in outcome.images] == [Disposition.WITHHELD] * 2
    assert [image.safety_verdict for image in outcome.images] == ["flagged", "flagged"]
    assert outcome.images[0].reason.endswith("; the channel is not marked NSFW")
    assert outcome.grid is not None
    assert outcome.grid.disposition is Disposition.SHOWN  # grey tiles only
    assert _files(settings, outcome.job_id) == ["grid.png"]
    record = await service.audit.get_job(outcome.job_id)
    assert record is not None
    assert [(i.variant, i.disposition, i.safety_threshold) for i in record.images] == [
        (0, "shown", 1e-9),
        (1, "withheld", 1e-9),
        (2, "withheld", 1e-9),
    ]

    # 2. In an NSFW channel of a guild that keeps the default policy: still withheld.
    outcome = await service.imagine(request, NSFW_CHANNEL)
    assert [image.disposition for image in outcome.images] == [Disposition.WITHHELD] * 2
    assert outcome.images[0].reason.endswith("; this server never posts flagged images")

    # 3. The guild allows spoilers in NSFW channels: shown behind a spoiler, files written.
    await storage.guild_settings.update(GUILD, nsfw_policy="spoiler")
    outcome = await service.imagine(request, NSFW_CHANNEL)
    assert [image.disposition for image in outcome.images] == [Disposition.SPOILER] * 2
    assert all(image.png is not None for image in outcome.images)
    assert outcome.grid is not None
    assert outcome.grid.disposition is Disposition.SPOILER
    assert _files(settings, outcome.job_id) == ["grid.png", "variant-1.png", "variant-2.png"]
    # ...but only in NSFW channels.
    elsewhere = Requester(source="test", guild_id=GUILD, channel_id=8, channel_nsfw=False)
    outcome = await service.imagine(request, elsewhere)
    assert [image.disposition for image in outcome.images] == [Disposition.WITHHELD] * 2


async def test_withheld_tiles_say_why(
    everything_flagged: tuple[Storage, ImagineService], settings: Settings
) -> None:
    _, service = everything_flagged
    outcome = await service.imagine(RequestedOptions(prompt="a red circle", variants=1), CLI)
    assert outcome.grid is not None
    assert outcome.grid.path is not None
    with Image.open(outcome.grid.path) as grid:
        pixels = np.asarray(grid.convert("RGB")).astype(int)
    # The grey tile with the reason written on it (under an invisible watermark).
    reason = outcome.images[0].reason
    expected = placeholder(256, 256, f"#1 withheld\n{reason}").astype(int)
    assert np.abs(pixels - expected).mean() < 4
    text = expected.min(axis=2) > 150
    assert text.sum() > 200
    assert (pixels[text].min(axis=1) > 110).mean() > 0.9


async def test_force_safe_prompts_are_checked_strictly_and_spoilered(settings: Settings) -> None:
    async with _open(settings) as (_, service):
        outcome = await service.imagine(RequestedOptions(prompt="a sexy red circle"), CLI)
        assert outcome.status is JobStatus.SUCCEEDED
        assert outcome.verdict.force_safe
        assert {image.disposition for image in outcome.images} == {Disposition.SPOILER}
        assert {image.safety_threshold for image in outcome.images} == {0.3}
        assert {image.reason for image in outcome.images} == {"force-safe prompt"}
        record = await service.audit.get_job(outcome.job_id)
        assert record is not None
        assert record.verdict == Verdict.FORCE_SAFE.value
        assert record.verdict_reasons == ("'sexy' is on the force-safe list (default list)",)


@pytest.fixture(scope="session")
def model_with_checker(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model plus a tiny random StableDiffusionSafetyChecker that flags everything."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    folder = tmp_path_factory.mktemp("checked") / "model"
    shutil.copytree(model_dir, folder)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
                     "num_hidden_layers": 2, "vocab_size": 99},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
                       "num_hidden_layers": 2, "image_size": 32, "patch_size": 4},
        projection_dim=32,
    )  # fmt: skip
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(config).eval()
    with torch.no_grad():
        checker.concept_embeds_weights[:] = -1.0  # every cosine distance is above -1
    checker.save_pretrained(folder / "safety_checker")
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder / "feature_extractor")
    index = json.loads((folder / "model_index.json").read_text())
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    index["requires_safety_checker"] = True
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


async def test_the_models_own_checker_sees_the_final_images(
    settings: Settings, model_with_checker: Path
) -> None:
    checked = settings.model_copy(update={"model": str(model_with_checker)})
    async with _open(checked) as (storage, service):
        # A fixed seed: a few seeds give the tiny model a near-blank picture (seed 132: std 0.6).
        request = RequestedOptions(prompt="a red circle", variants=2, seed=1)
        outcome = await service.imagine(request, CLI)
        record = await service.audit.get_job(outcome.job_id)
        await storage.guild_settings.update(GUILD, nsfw_policy="spoiler")
        spoilered = await service.imagine(request, NSFW_CHANNEL)
    assert outcome.status is JobStatus.SUCCEEDED
    assert [image.model_flagged for image in outcome.images] == [True, True]
    assert all(image.safety_score < 0.5 for image in outcome.images)  # open_nsfw: fine
    assert [image.disposition for image in outcome.images] == [Disposition.WITHHELD] * 2
    assert outcome.images[0].reason.startswith("flagged by the model's checker")
    assert record is not None
    assert [image.model_flagged for image in record.images][1:] == [True, True]
    # Taken out of the pipeline, the checker reports and leaves the pixels alone (inside it,
    # diffusers would have blacked the picture out before our upscale).
    assert [image.disposition for image in spoilered.images] == [Disposition.SPOILER] * 2
    for image in spoilered.images:
        assert image.path is not None
        with Image.open(image.path) as picture:
            assert np.asarray(picture).std() > 20


async def test_without_a_checker_in_the_model_none_is_recorded(settings: Settings) -> None:
    async with _open(settings) as (_, service):
        outcome = await service.imagine(RequestedOptions(prompt="a red circle", variants=1), CLI)
    assert [image.model_flagged for image in outcome.images] == [None]
    assert [image.disposition for image in outcome.images] == [Disposition.SHOWN]
