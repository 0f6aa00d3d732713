"""The fast path's switches on the embedded model (CPU, 64 px, few steps): each one applies and
the pictures stay right; DeepCache runs the deep blocks less and still draws the prompt's scene;
fused projections step aside for LoRA batches; padding a batch changes no pixel; the UNet
compiles once per padded batch size; a bad SDBOT_FAST_PATH is refused with a message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

from generation.catalog import load_catalog
from generation.embedded.analyser import analyse
from generation.fast_path import FastPath, apply_fast_path, call_pipeline, padded_size
from generation.loading import load_pipeline
from generation.models import EMBEDDED_MODEL_DIR, resolve_model
from generation.options import GenerationOptions, LoraChoice
from generation.pipeline import PipelineRunner, resolve_dtype
from generation.protocol import WorkRequest
from moderation.policy import ImagePolicy

if TYPE_CHECKING:
    from bot.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers, numpy 2
POLICY = ImagePolicy(threshold=0.5, strict_threshold=0.3)
PROMPT = "a red circle on a blue background"
SEEDS = (1, 2, 3, 4)


def load() -> Any:
    return load_pipeline(resolve_model(str(EMBEDDED_MODEL_DIR)), "cpu", torch.float32)


def draw(pipe: Any, seeds: tuple[int, ...] = SEEDS, steps: int = 4, **kwargs: Any) -> np.ndarray:
    images = call_pipeline(
        pipe, seeds, prompt=[PROMPT] * len(seeds), num_inference_steps=steps,
        guidance_scale=3.0, **kwargs,
    )  # fmt: skip
    return np.stack([np.round(np.clip(image, 0, 1) * 255) for image in images])


def request(
    seeds: tuple[int, ...], loras: tuple[LoraChoice, ...] = (), steps: int = 4
) -> WorkRequest:
    options = GenerationOptions(PROMPT, "", seeds, steps, 3.0, 64, 64, "default", loras=loras)
    return WorkRequest(1, options, POLICY)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return draw(load())


def test_fp16_and_sdpa_are_the_cuda_defaults() -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    assert resolve_dtype("auto", "cuda") is torch.float16
    assert resolve_dtype("bfloat16", "cuda") is torch.bfloat16
    processors = load().unet.attn_processors.values()
    assert processors
    assert all(isinstance(p, AttnProcessor2_0) for p in processors)


def test_channels_last_keeps_the_pictures(reference: np.ndarray) -> None:
    pipe = load()
    assert apply_fast_path(pipe, FastPath(channels_last=True), "cpu") == ("channels_last",)
    for module in (pipe.unet.conv_in, pipe.vae.decoder.conv_in):
        assert module.weight.is_contiguous(memory_format=torch.channels_last)
    assert np.abs(draw(pipe) - reference).max() <= 2


def test_fuse_qkv_keeps_the_pictures(reference: np.ndarray) -> None:
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    pipe = load()
    assert apply_fast_path(pipe, FastPath(fuse_qkv=True), "cpu") == ("fuse_qkv",)
    attention = pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1
    assert isinstance(attention.processor, FusedAttnProcessor2_0)
    assert attention.to_qkv.weight.shape[0] == 3 * attention.to_q.weight.shape[0]
    assert np.abs(draw(pipe) - reference).max() <= 2


def test_fused_projections_step_aside_for_a_lora_batch() -> None:
    """LoRA adapters wrap the separate projections; a fused attention would skip them and
    draw the base model's picture. A batch with LoRAs runs unfused, the next one fused."""
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    from generation.model_pool import ModelPool

    catalog = load_catalog(str(EMBEDDED_MODEL_DIR), lora_dir=EMBEDDED_MODEL_DIR.parent / "loras")
    outline = (LoraChoice("outline", 1.0),)
    drawn = {}
    for fuse in (False, True):
        pool = ModelPool(catalog, "cpu", torch.float32, 10**10, fast=FastPath(fuse_qkv=fuse))
        model, _ = pool.prepare("", outline)
        runner = model.runner
        processor = runner.pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1
        with_lora = runner.generate([request((5,), outline)])[0].images[0].astype(int)
        assert not isinstance(processor.processor, FusedAttnProcessor2_0)
        base = runner.generate([request((5,))])[0].images[0].astype(int)
        assert isinstance(processor.processor, FusedAttnProcessor2_0) is fuse
        drawn[fuse] = with_lora, base
    (lora_plain, base_plain), (lora_fused, base_fused) = drawn[False], drawn[True]
    assert np.abs(lora_fused - lora_plain).max() <= 2  # the LoRA's picture, fused or not
    assert np.abs(base_fused - base_plain).max() <= 2
    assert np.abs(lora_plain - base_plain).mean() > 5  # and the LoRA does change it


def test_vae_slicing_and_tiling_keep_the_pictures(reference: np.ndarray) -> None:
    pipe = load()
    applied = apply_fast_path(pipe, FastPath(vae_slicing=True, vae_tiling=True), "cpu")
    assert applied == ("vae_slicing", "vae_tiling")
    assert pipe.vae.use_slicing
    assert pipe.vae.use_tiling
    assert np.abs(draw(pipe) - reference).max() <= 1  # 64 px: one tile, decoded one by one
    tiled = []
    original = pipe.vae.tiled_decode
    pipe.vae.tiled_decode = lambda *a, **k: tiled.append(1) or original(*a, **k)
    big = draw(pipe, seeds=(1,), height=128, width=128)
    assert tiled
    assert big.shape == (1, 128, 128, 3)


def test_padded_sizes() -> None:
    assert [padded_size(n, (1, 2, 4, 8)) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
    # Past the largest size (SDBOT_BATCH_MAX_IMAGES above it): multiples of it, not each size.
    assert [padded_size(n, (1, 2, 4, 8)) for n in (9, 16, 17, 20)] == [16, 16, 24, 24]
    assert padded_size(3, ()) == 3


def test_a_padded_batch_gives_the_same_pixels() -> None:
    """A batch of 3 padded to 4 images (seed 0 noise, outputs dropped) draws what it draws
    alone; the UNet saw 4 images (twice that with guidance)."""
    runner = PipelineRunner(load())
    seeds = (11, 12, 13)
    plain = runner.generate([request(seeds)])[0].images
    batches: list[int] = []
    hook = runner.pipe.unet.register_forward_pre_hook(lambda m, a: batches.append(len(a[0])))
    runner.pad_sizes = (1, 2, 4)
    try:
        padded = runner.generate([request(seeds)])[0].images
    finally:
        hook.remove()
    assert set(batches) == {8}
    assert len(padded) == 3
    for got, want in zip(padded, plain, strict=True):
        assert np.array_equal(got, want)


@pytest.fixture
def counted_mid_block() -> Iterator[tuple[Any, list[int]]]:
    pipe = load()
    calls: list[int] = []
    hook = pipe.unet.mid_block.register_forward_hook(lambda *_: calls.append(1))
    yield pipe, calls
    hook.remove()


def test_deepcache_runs_the_deep_blocks_less_and_draws_the_scene(
    counted_mid_block: tuple[Any, list[int]],
) -> None:
    from generation.fast_unet import FastUNet

    pipe, calls = counted_mid_block
    full = draw(pipe, seeds=(1, 2), steps=10)
    assert len(calls) == 10
    assert apply_fast_path(pipe, FastPath(deepcache_interval=3), "cpu") == ("deepcache:3",)
    calls.clear()
    cached = draw(pipe, seeds=(1, 2), steps=10)
    assert len(calls) == 4  # steps 0, 3, 6, 9 whole; 6 shallow
    fast = FastUNet.of(pipe.unet)
    assert fast is not None
    assert (fast.cache.whole, fast.cache.shallow) == (4, 6)
    assert not np.array_equal(cached, full)
    for image in cached.astype(np.uint8):
        scene = analyse(image)
        assert scene.background == "blue"
        assert [(o.colour, o.shape) for o in scene.objects] == [("red", "circle")]
    # Off for a batch, without reloading: the whole UNet's pixels again.
    fast.interval = 0
    calls.clear()
    assert np.array_equal(draw(pipe, seeds=(1, 2), steps=10), full)
    assert len(calls) == 10


def _tiny_unet(sdxl: bool) -> Any:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    extra: dict[str, Any] = {}
    if sdxl:  # the added time/text embedding
        extra = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + 16,
        }
    return UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(16, 32),
        down_block_types=(
            "DownBlock2D" if sdxl else "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
        ),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D" if sdxl else "CrossAttnUpBlock2D"),
        layers_per_block=2,
        cross_attention_dim=24,
        attention_head_dim=8,
        norm_num_groups=8,
        **extra,
    ).eval()


@pytest.mark.parametrize("layout", ["embedded", "sd1", "sdxl"])
def test_a_shallow_evaluation_on_the_same_inputs_gives_the_whole_output(layout: str) -> None:
    """The shallow path is the whole forward's last stretch: fed the features the whole
    evaluation kept and the same inputs, it gives the same output (embedded model, SD 1.x's
    cross-attention first and last blocks, SDXL's added embeddings)."""
    from generation.fast_unet import FastUNet

    unet = load().unet if layout == "embedded" else _tiny_unet(layout == "sdxl")
    width = unet.config.cross_attention_dim
    generator = torch.Generator().manual_seed(3)
    inputs: dict[str, Any] = {
        "encoder_hidden_states": torch.randn(2, 77, width, generator=generator),
        "return_dict": False,
    }
    if layout == "sdxl":
        inputs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, 16, generator=generator),
            "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2),
        }
    sample = torch.randn(2, 4, 16, 16, generator=generator)
    fast = FastUNet.install(unet, interval=2)
    fast.begin()
    with torch.inference_mode():
        whole = unet(sample, 500, **inputs)[0]
        shallow = unet(sample, 500, **inputs)[0]
    assert (fast.cache.whole, fast.cache.shallow) == (1, 1)
    torch.testing.assert_close(shallow, whole, rtol=1e-5, atol=1e-5)


def test_the_compiled_unet_compiles_once_per_padded_batch_size() -> None:
    """torch.compile (the eager backend here: inductor's C++ build is slow on this machine)
    of the UNet: batches of 3 and 4 share the graph of 4, and the first call's time is kept."""
    from generation.fast_unet import FastUNet

    graphs: list[int] = []

    def counting(graph: Any, example_inputs: Any) -> Any:
        graphs.append(1)
        return graph.forward

    pipe = load()
    fast = FastUNet.install(pipe.unet, compile_backend=counting)
    plain = draw(load(), seeds=(1, 2, 3), steps=2)
    padded = draw(pipe, seeds=(1, 2, 3), steps=2, pad_sizes=(1, 4))
    compiled = len(graphs)
    assert compiled >= 1
    assert list(fast.compile_ms) == ["whole 8x4x16x16"]
    assert np.abs(padded - plain).max() <= 1  # a traced graph may round a few pixels apart
    draw(pipe, seeds=(5, 6, 7, 8), steps=2, pad_sizes=(1, 4))
    assert len(graphs) == compiled  # no recompile for the other batch size of that graph
    assert list(fast.compile_ms) == ["whole 8x4x16x16"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", FastPath()),
        ("channels_last, fuse_qkv", FastPath(channels_last=True, fuse_qkv=True)),
        (
            "compile,vae_tiling,deepcache",
            FastPath(compile=True, vae_tiling=True, deepcache_interval=3),
        ),
        ("deepcache:2", FastPath(deepcache_interval=2)),
    ],
)
def test_the_switches_parse(text: str, expected: FastPath) -> None:
    assert FastPath.parse(text) == expected
    assert FastPath.parse(expected.describe()) == expected


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("warp", "unknown fast-path switch 'warp'; known: channels_last"),
        ("compile:4", "unknown fast-path switch 'compile:4'"),
        ("deepcache:1", "deepcache interval must be a whole number from 2 to 10"),
        ("deepcache:x", "got 'deepcache:x'"),
        ("deepcache:11", "from 2 to 10"),
    ],
)
def test_a_bad_sdbot_fast_path_is_refused(
    text: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from bot.settings import Settings

    monkeypatch.setenv("SDBOT_FAST_PATH", text)
    with pytest.raises(ValidationError, match="fast_path") as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert said in str(caught.value)


def test_the_adherence_bench_compares_the_fast_path_with_the_plain_one() -> None:
    from generation.embedded.adherence import compare_fast
    from generation.embedded.prompts import benchmark_cases

    pipe = load()
    fast = FastPath(deepcache_interval=2)
    apply_fast_path(pipe, fast, "cpu")
    case = benchmark_cases()[:1]
    comparison = compare_fast(EMBEDDED_MODEL_DIR, pipe, fast, case, 4, 3.0, 0, "cpu")
    assert comparison.fast == "deepcache:2"
    assert comparison.images == 4
    assert 0 < comparison.mean_abs_diff < 64
    assert 10 < comparison.psnr_db < 100
    assert "deepcache:2 against the plain path, 4 images" in comparison.to_text()


def test_sdbot_bench_adherence_refuses_a_bad_fast_path(settings: Settings) -> None:
    from tests.test_cli import sdbot

    result = sdbot(settings, "bench", "adherence", "--fast", "deepcache:zero")
    assert result.returncode == 2
    assert "--fast: deepcache interval must be a whole number from 2 to 10" in result.stderr


def test_deepcache_on_a_compiled_unet_draws_what_it_draws_uncompiled() -> None:
    """Each path (whole, shallow) is its own compiled graph; the choice between them stays
    in Python, so the step count never enters a graph's guards."""
    from generation.fast_unet import FastUNet

    plain, compiled = load(), load()
    FastUNet.install(plain.unet, interval=2)
    fast = FastUNet.install(compiled.unet, interval=2, compile_backend="eager")
    want = draw(plain, seeds=(1, 2), steps=4)
    assert np.abs(draw(compiled, seeds=(1, 2), steps=4) - want).max() <= 1
    assert sorted(fast.compile_ms) == ["shallow 4x4x16x16", "whole 4x4x16x16"]
    assert (fast.cache.whole, fast.cache.shallow) == (2, 2)


async def test_sdbot_fast_path_reaches_the_worker_through_the_service(settings: Settings) -> None:
    """SDBOT_FAST_PATH goes from the settings to the worker process's models (its ready message
    names the switches applied), and a job drawn under them goes the whole way: checked,
    marked and recorded."""
    from bot.app import open_service, open_storage
    from bot.imagine.types import Requester
    from generation.options import RequestedOptions
    from generation.queue import LocalQueue
    from storage import migrations
    from storage.models import JobStatus

    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    configured = settings.model_copy(update={"fast_path": "channels_last,deepcache:3"})
    request = RequestedOptions(prompt=PROMPT, seed=5, variants=1, steps=10)
    async with open_storage(configured) as storage, open_service(configured, storage) as service:
        outcome = await service.imagine(request, Requester(source="test"))
        assert isinstance(service.queue, LocalQueue)
        ready = service.queue.supervisor.ready_info
    assert outcome.status is JobStatus.SUCCEEDED, outcome.error
    assert [image.watermark_verified for image in outcome.images] == [True]
    assert ready is not None
    assert ready.fast_path == ("channels_last", "deepcache:3")


def test_a_compiled_unet_runs_lora_batches_uncompiled_and_never_recompiles_for_them() -> None:
    """Compiled graphs guard on each adapter's weight: every new LoRA weight would compile
    the UNet again (seconds to minutes on a GPU, inside a member's batch). A batch with LoRAs
    runs uncompiled; the next batch without them runs on the graph compiled before."""
    from generation.fast_unet import FastUNet
    from generation.model_pool import ModelPool

    graphs: list[int] = []

    def counting(graph: Any, example_inputs: Any) -> Any:
        graphs.append(1)
        return graph.forward

    catalog = load_catalog(str(EMBEDDED_MODEL_DIR), lora_dir=EMBEDDED_MODEL_DIR.parent / "loras")
    pool = ModelPool(catalog, "cpu", torch.float32, 10**10)
    model, _ = pool.prepare("", (LoraChoice("outline", 1.0),))
    fast = FastUNet.install(model.runner.pipe.unet, compile_backend=counting)
    model.runner.generate([request((5,), steps=2)])
    compiled = len(graphs)
    assert compiled >= 1
    drawn = []
    for weight in (1.0, 0.5, 0.7):
        lora = (LoraChoice("outline", weight),)
        drawn.append(model.runner.generate([request((5,), lora, steps=2)])[0].images[0])
        assert fast.eager
    assert len(graphs) == compiled  # no graph for any LoRA batch
    assert np.abs(drawn[0].astype(int) - drawn[1].astype(int)).mean() > 0  # the weights apply
    model.runner.generate([request((5,), steps=2)])
    assert not fast.eager
    assert len(graphs) <= compiled + 1  # at most once more: the adapters' layers were added
