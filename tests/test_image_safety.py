"""Image safety through the real worker: the policy by guild and channel, the strict check for
force-safe prompts, the model's own checker, and what the audit log keeps of each image."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from bot.app import open_service, open_storage
from bot.imagine.service import ImagineService
from bot.imagine.types import Requester
from bot.settings import Settings
from generation.images import from_image_file, make_grid, placeholder, to_png, withheld_tile
from generation.options import GenerationOptions, RequestedOptions
from generation.protocol import (
    PostReady,
    ReadyImage,
    WorkBatch,
    WorkerSpec,
    WorkRequest,
    WorkResult,
    watermark_id,
)
from generation.supervisor import WorkerSupervisor
from moderation import watermark
from moderation.policy import Disposition, ImagePolicy, NsfwPolicy
from moderation.safety import SafetyResult
from storage import migrations
from storage.models import JobStatus, Verdict
from storage.repositories import Storage

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
    record = await service.storage.audit.get_job(outcome.job_id)
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
        record = await service.storage.audit.get_job(outcome.job_id)
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
        record = await service.storage.audit.get_job(outcome.job_id)
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


# The worker's post-ready output: the request carries the policy fixed at admission, and what
# comes back is what may be posted (thresholds force the scores' side, as above).

OPTIONS = GenerationOptions(
    prompt="a red circle",
    negative_prompt="",
    seeds=(1, 2),
    steps=2,
    guidance_scale=7.5,
    width=64,
    height=64,
    scheduler="euler",
)
FLAG_ALL = {"threshold": 1e-9, "strict_threshold": 1e-9}
FLAG_NONE = {"threshold": 1.0, "strict_threshold": 1.0}


def _policy(**values: Any) -> ImagePolicy:
    return ImagePolicy(**values)


@pytest.fixture
async def supervisor(model_dir: Path) -> AsyncIterator[WorkerSupervisor]:
    running = WorkerSupervisor(WorkerSpec(model=str(model_dir), device="cpu"))
    try:
        yield running
    finally:
        await running.close()


async def _run(
    supervisor: WorkerSupervisor,
    policies: Sequence[ImagePolicy],
    options: GenerationOptions = OPTIONS,
) -> list[WorkResult]:
    """One batch (one diffusion call), a job per policy: the same pictures for each."""
    requests = tuple(
        WorkRequest(job_id, options, policy) for job_id, policy in enumerate(policies, start=101)
    )
    answers = await supervisor.run_batch(WorkBatch(requests))
    results = [answers[request.job_id] for request in requests]
    assert all(isinstance(result, WorkResult) for result in results), results
    return [result for result in results if isinstance(result, WorkResult)]


def _post(result: WorkResult) -> tuple[PostReady, ReadyImage]:
    assert result.post.grid is not None
    return result.post, result.post.grid


def _marked(image: ReadyImage) -> bool:
    """Whether ``png`` is the marked picture itself (not a placeholder in its stead)."""
    return hashlib.sha256(image.png).hexdigest() == image.sha256


def _below_badge(picture: npt.NDArray[np.uint8]) -> npt.NDArray[np.int_]:
    """A tile without its top quarter, where the grid draws the number badge."""
    return picture[picture.shape[0] // 4 :].astype(int)


def _cell(grid_png: bytes, variant: int, width: int, height: int) -> npt.NDArray[np.int_]:
    """A variant's cell of a grid (two columns), below its number badge."""
    grid = from_image_file(grid_png)
    row, column = divmod(variant - 1, 2)
    return _below_badge(
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width]
    )


async def test_the_worker_returns_what_each_policy_posts(supervisor: WorkerSupervisor) -> None:
    results = await _run(
        supervisor,
        [
            _policy(**FLAG_NONE),
            _policy(**FLAG_ALL, nsfw_policy=NsfwPolicy.SPOILER),  # not an NSFW channel
            _policy(**FLAG_ALL, channel_nsfw=True),  # the guild blocks
            _policy(**FLAG_ALL, channel_nsfw=True, nsfw_policy=NsfwPolicy.SPOILER),
            _policy(**FLAG_NONE, force_safe=True),
        ],
    )
    shown, not_nsfw, blocked, spoilered, force_safe = results

    # (each variant's disposition, how its reason ends, the grid's disposition)
    expected = [
        (Disposition.SHOWN, "", Disposition.SHOWN),
        (Disposition.WITHHELD, "; the channel is not marked NSFW", Disposition.SHOWN),
        (Disposition.WITHHELD, "; this server never posts flagged images", Disposition.SHOWN),
        (Disposition.SPOILER, "NSFW score", Disposition.SPOILER),
        (Disposition.SPOILER, "force-safe prompt", Disposition.SPOILER),
    ]
    for job_id, result, (disposition, reason, grid_disposition) in zip(
        range(101, 106), results, expected, strict=True
    ):
        post, grid = _post(result)
        assert [image.disposition for image in post.images] == [disposition] * 2
        assert all(reason in image.decision.reason for image in post.images)
        assert [image.variant for image in post.images] == [1, 2]
        assert grid.disposition is grid_disposition
        assert grid.decision.reason == (
            post.images[0].decision.reason if grid_disposition is Disposition.SPOILER else ""
        )
        # The grid is marked with the job's id and variant 0, which `sdbot trace` reads back.
        assert grid.watermark_verified
        assert watermark.decode(from_image_file(grid.png)) == grid.watermark_id
        assert grid.watermark_id == watermark_id(job_id, 0)
        assert grid.sha256 == hashlib.sha256(grid.png).hexdigest()
        assert (grid.variant, grid.seed, grid.width, grid.height) == (0, 1, 512, 256)

    for result in (shown, spoilered, force_safe):
        post, _ = _post(result)
        # Shown and spoilered variants are the marked pictures themselves.
        assert all(_marked(image) for image in post.images)

    for result in (not_nsfw, blocked):
        post, grid = _post(result)
        for image, variant in zip(post.images, _post(spoilered)[0].images, strict=True):
            # A withheld variant comes back as its placeholder, never as its pixels; its record
            # keeps the marked picture's facts (the same pictures as the spoilered job's, but
            # for the job's id in the watermark).
            tile = withheld_tile(image.width, image.height, image.variant, image.decision.reason)
            assert image.png == to_png(tile)
            assert not _marked(image)
            assert len(image.sha256) == 64
            assert image.watermark_id == watermark_id(result.job_id, image.variant)
            assert (image.width, image.height) == (variant.width, variant.height) == (256, 256)
            assert image.safety == variant.safety
            assert image.decision.flagged
            assert image.decision.threshold == 1e-9
            cell = _cell(grid.png, image.variant, image.width, image.height)
            assert np.abs(cell - _below_badge(tile)).mean() < 4
        # A grid of grey tiles is shown, and counts nothing it does not show.
        assert grid.safety == SafetyResult(0.0, None)
        assert not grid.decision.flagged

    post, grid = _post(spoilered)
    assert grid.decision.flagged
    assert grid.safety.nsfw_score == max(image.safety.nsfw_score for image in post.images)

    # The grid is the picture the bot drew before the redesign: the variants' marked pixels,
    # numbered, then marked as variant 0.
    post, grid = _post(shown)
    tiles = [from_image_file(image.png) for image in post.images]
    marked = watermark.embed(make_grid(tiles), watermark_id(101, 0)).rgb
    assert np.array_equal(from_image_file(grid.png), marked)  # its PNG adds the A1111 text


async def test_the_policy_and_the_post_ready_output_travel_through_redis(
    supervisor: WorkerSupervisor,
) -> None:
    """The Redis codec carries the new protocol fields as they are (no Redis server needed)."""
    from generation.queue.redis import codec

    policies = [
        _policy(**FLAG_ALL, channel_nsfw=True, nsfw_policy=NsfwPolicy.SPOILER, force_safe=True),
        _policy(**FLAG_ALL),
    ]
    for policy in policies:
        request = WorkRequest(7, OPTIONS, image_policy=policy)
        assert codec.decode_payload(codec.encode_request(request, "uid")) == (request, "uid")
    for result in await _run(supervisor, policies):
        fields = codec.encode_result(result, "uid")
        raw = {  # as Redis hands a hash back: bytes for names and values
            key.encode(): value if isinstance(value, bytes) else value.encode()
            for key, value in fields.items()
        }
        assert codec.decode_result(raw, "uid").post == result.post


async def test_only_the_flagged_variant_is_withheld(supervisor: WorkerSupervisor) -> None:
    [first] = await _run(supervisor, [_policy(**FLAG_NONE)])
    low, high = sorted(image.safety.nsfw_score for image in first.post.images)
    assert low < high, "two different pictures score differently"
    middle = (low + high) / 2
    [result] = await _run(supervisor, [_policy(threshold=middle, strict_threshold=middle)])
    post, grid = _post(result)
    kept = [image for image in post.images if not image.withheld]
    gone = [image for image in post.images if image.withheld]
    assert [image.safety.nsfw_score for image in kept] == [low]
    assert [image.safety.nsfw_score for image in gone] == [high]
    assert grid.safety.nsfw_score == low  # the withheld tile counts for nothing
    assert grid.disposition is Disposition.SHOWN
    # The first run was the same job (same id, seeds and pictures) with every picture shown.
    marked = next(image for image in first.post.images if image.variant == kept[0].variant)
    assert kept[0].png == marked.png
    cell = _cell(grid.png, marked.variant, marked.width, marked.height)
    assert np.abs(cell - _below_badge(from_image_file(marked.png))).mean() < 4
    withheld = next(image for image in first.post.images if image.variant == gone[0].variant)
    assert gone[0].sha256 == withheld.sha256
    cell = _cell(grid.png, withheld.variant, withheld.width, withheld.height)
    assert np.abs(cell - _below_badge(from_image_file(withheld.png))).mean() > 10  # not its pixels


async def test_an_upscale_posts_its_one_picture_without_a_grid(
    supervisor: WorkerSupervisor,
) -> None:
    options = dataclasses.replace(OPTIONS, seeds=(1,), upscale=2)
    spoiler = _policy(**FLAG_ALL, channel_nsfw=True, nsfw_policy=NsfwPolicy.SPOILER)
    shown, spoilered, withheld = await _run(
        supervisor, [_policy(**FLAG_NONE), spoiler, _policy(**FLAG_ALL)], options
    )
    for result, disposition in [
        (shown, Disposition.SHOWN),
        (spoilered, Disposition.SPOILER),
        (withheld, Disposition.WITHHELD),
    ]:
        assert result.post.grid is None
        [image] = result.post.images
        assert image.disposition is disposition
        assert (image.width, image.height) == (512, 512)
    assert _marked(shown.post.images[0])
    assert not _marked(withheld.post.images[0])


@pytest.mark.redis
async def test_a_request_an_older_bot_queued_without_its_policy_fails_with_the_reason(
    redis_prefix: str, supervisor: WorkerSupervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the post-ready output a request had no image policy (round 1 of the redesign: an
    empty one); the worker fails such a job with the reason and goes on with the next."""
    from generation.queue import Failed, QueuedJob
    from generation.queue.redis import RedisQueue, RedisWorker, codec
    from generation.queue.redis import client as redis_client
    from tests.conftest import REDIS_URL

    def as_older_bots_wrote_it(request: WorkRequest, uid: str) -> str:
        data = json.loads(codec.encode_request(request, uid))
        if request.job_id == 1:
            del data["image_policy"]
        else:
            data["image_policy"] = None
        return json.dumps(data)

    queue = await RedisQueue.connect(REDIS_URL, prefix=redis_prefix)
    worker = await RedisWorker.connect(REDIS_URL, supervisor, prefix=redis_prefix, name="new")
    try:
        policy = _policy(**FLAG_NONE)
        with monkeypatch.context() as patch:
            patch.setattr(redis_client, "encode_request", as_older_bots_wrote_it)
            old = [
                await queue.submit(QueuedJob(WorkRequest(n, OPTIONS, policy), 1, n)) for n in (1, 2)
            ]
        new = QueuedJob(WorkRequest(3, OPTIONS, policy), 1, 3)
        await queue.submit(new)
        # One claim may hold all three (they share a batch key); whatever the claims, only
        # the new job is handed to the model and the old ones end failed.
        claimed = [job for _ in range(3) for job in await worker.next_batch()]
        for handle in old:
            events = [event async for event in handle.events()]
            assert isinstance(events[-1], Failed)
            assert "lacks image_policy" in events[-1].reason or "got None" in events[-1].reason
            assert events[-1].reason.endswith("another version of sdbot queued it; ask again")
        assert [(job.request, job.uid) for job in claimed] == [(new.request, new.uid)]
    finally:
        await worker.close()
        await queue.close()
