"""Prompt conditioning on real pipelines: the embedded model (SD 1.x layout, a 30-token window)
and a tiny SDXL pipeline built here (two text encoders, pooled embeds). A plain prompt gives
exactly diffusers' tensors and pixels; weights, long prompts, BREAK and textual inversion
follow A1111's rules."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from generation.conditioning import MAX_CHUNKS, encode, window_count
from generation.loading import load_pipeline
from generation.models import EMBEDDED_MODEL_DIR, resolve_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers, numpy 2

PROMPT = "a small red circle on the left on a blue background"


@pytest.fixture(scope="module")
def pipe() -> Any:
    return load_pipeline(resolve_model(str(EMBEDDED_MODEL_DIR)), "cpu", torch.float32)


@pytest.fixture(scope="module")
def sdxl() -> Any:
    """SDXL's layout at toy size: two CLIP encoders (the second with a projection, padding
    with "!" as SDXL's does), a text_time UNet fed both encoders' widths (32 + 32)."""
    torch.manual_seed(0)
    folder = EMBEDDED_MODEL_DIR / "tokenizer"
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    tokenizer_2 = CLIPTokenizer.from_pretrained(folder, pad_token="!")

    def text_config() -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=3,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            projection_dim=32,
            hidden_act="gelu",
        )

    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=8 * 6 + 32,  # 6 time ids + the pooled width
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config()).eval(),
        text_encoder_2=CLIPTextModelWithProjection(text_config()).eval(),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe: Any, size: int, **kwargs: Any) -> np.ndarray:
    generator = torch.Generator("cpu").manual_seed(3)
    output = pipe(
        num_inference_steps=2,
        width=size,
        height=size,
        generator=generator,
        output_type="np",
        **kwargs,
    )
    return np.asarray(output.images)


def windows(embeds: torch.Tensor, length: int) -> list[torch.Tensor]:
    return list(torch.split(embeds, length, dim=1))


def test_a_plain_prompt_gives_exactly_the_tensors_of_diffusers(pipe: Any) -> None:
    prompts = [PROMPT, "two green squares"]
    negatives = ["", "a yellow triangle"]
    conditioning = encode(pipe, prompts, negatives)
    expected, expected_negative = pipe.encode_prompt(prompts, "cpu", 1, True, negatives)
    assert torch.equal(conditioning.prompt_embeds, expected)
    assert torch.equal(conditioning.negative_prompt_embeds, expected_negative)
    assert conditioning.cut == (0, 0)
    assert conditioning.pipeline_kwargs().keys() == {"prompt_embeds", "negative_prompt_embeds"}
    assert conditioning.prompt_embeds.dtype == pipe.text_encoder.dtype
    assert not conditioning.prompt_embeds.requires_grad


def test_a_plain_prompt_draws_exactly_the_pixels_of_diffusers(pipe: Any) -> None:
    ours = draw(pipe, 64, **encode(pipe, [PROMPT], [""]).pipeline_kwargs())
    assert np.array_equal(ours, draw(pipe, 64, prompt=PROMPT))
    weighted = encode(pipe, [PROMPT.replace("red", "(red:2)")], [""])
    assert not np.array_equal(draw(pipe, 64, **weighted.pipeline_kwargs()), ours)


def test_a_weight_scales_its_tokens_and_the_mean_is_kept(pipe: Any) -> None:
    """A1111's emphasis: the weighted token's embedding times its weight, then the window
    rescaled to its original mean."""
    (plain,) = encode(pipe, [PROMPT], [""]).prompt_embeds
    red = pipe.tokenizer(PROMPT).input_ids.index(pipe.tokenizer.convert_tokens_to_ids("red</w>"))
    for weight in (1.5, 0.5):
        weighted_prompt = PROMPT.replace("red", f"(red:{weight})")
        (weighted,) = encode(pipe, [weighted_prompt], [""]).prompt_embeds
        expected = plain.clone()
        expected[red] *= weight
        expected *= plain.mean() / expected.mean()
        torch.testing.assert_close(weighted, expected)
        torch.testing.assert_close(weighted.mean(), plain.mean())
        # every other token only rescaled; the weighted one moved along its own direction
        ratio = (weighted[red].norm() / plain[red].norm()) / (weighted[0].norm() / plain[0].norm())
        assert ratio == pytest.approx(weight, rel=1e-4)
    # A weight of 1 is no weight: diffusers' tensors again.
    (same,) = encode(pipe, [PROMPT.replace("red", "(red:1)")], [""]).prompt_embeds
    assert torch.equal(same, plain)
    (up,) = encode(pipe, [PROMPT.replace("red", "((red))")], [""]).prompt_embeds
    assert not torch.equal(up, plain)


def test_a_long_prompt_is_chunked_not_cut(pipe: Any) -> None:
    """The embedded model's window is 30 tokens (32 with BOS and EOS): 40 one-token words make
    two windows, each encoded as diffusers encodes those tokens alone, and the negative gets
    an empty second window."""
    length = pipe.tokenizer.model_max_length
    assert length == 32
    prompt = "red " * 30 + "blue " * 10
    assert window_count(pipe, prompt) == 2
    conditioning = encode(pipe, [prompt], [""])
    assert conditioning.cut == (0,)
    assert conditioning.prompt_embeds.shape == (1, 2 * length, 128)
    first, second = windows(conditioning.prompt_embeds, length)
    empty = pipe.encode_prompt("", "cpu", 1, False)[0]
    assert torch.equal(first, pipe.encode_prompt("red " * 30, "cpu", 1, False)[0])
    assert torch.equal(second, pipe.encode_prompt("blue " * 10, "cpu", 1, False)[0])
    assert all(torch.equal(w, empty) for w in windows(conditioning.negative_prompt_embeds, length))
    assert draw(pipe, 64, **conditioning.pipeline_kwargs()).shape == (1, 64, 64, 3)


def test_break_starts_a_new_window(pipe: Any) -> None:
    conditioning = encode(pipe, ["red circle BREAK blue square"], ["green BREAK"])
    first, second = windows(conditioning.prompt_embeds, 32)
    assert torch.equal(first, pipe.encode_prompt("red circle", "cpu", 1, False)[0])
    assert torch.equal(second, pipe.encode_prompt("blue square", "cpu", 1, False)[0])
    assert conditioning.negative_prompt_embeds.shape == (1, 64, 128)


def test_beyond_the_last_window_the_prompt_is_cut_and_counted(pipe: Any) -> None:
    prompt = "red " * (30 * MAX_CHUNKS + 7)
    assert window_count(pipe, prompt) == MAX_CHUNKS
    conditioning = encode(pipe, [prompt, "blue"], ["", "green " * 35 * MAX_CHUNKS])
    assert conditioning.cut == (7, 0)
    assert conditioning.negative_cut == (0, 35 * MAX_CHUNKS - 30 * MAX_CHUNKS)
    assert conditioning.prompt_embeds.shape == (2, 32 * MAX_CHUNKS, 128)
    # the short prompt is padded with empty windows to the batch's count
    empty = pipe.encode_prompt("", "cpu", 1, False)[0]
    assert all(torch.equal(w, empty) for w in windows(conditioning.prompt_embeds[1:], 32)[1:])


def test_textual_inversion_tokens_expand_as_diffusers_expands_them(pipe: Any) -> None:
    """A two-vector embedding: "<dots>" becomes "<dots> <dots>_1" (maybe_convert_prompt)."""
    own = StableDiffusionPipeline(
        **{
            **pipe.components,
            "tokenizer": copy.deepcopy(pipe.tokenizer),
            "text_encoder": copy.deepcopy(pipe.text_encoder),
        }
    )
    torch.manual_seed(1)
    own.load_textual_inversion({"<dots>": torch.randn(2, 128) * 0.02})
    prompt = "a red circle, <dots>"
    conditioning = encode(own, [prompt], ["<dots>"])
    expected, expected_negative = own.encode_prompt(prompt, "cpu", 1, True, "<dots>")
    assert torch.equal(conditioning.prompt_embeds, expected)
    assert torch.equal(conditioning.negative_prompt_embeds, expected_negative)
    assert not torch.equal(expected, pipe.encode_prompt(prompt, "cpu", 1, False)[0])
    weighted = encode(own, ["a red circle, (<dots>:1.4)"], [""])
    assert not torch.equal(weighted.prompt_embeds, expected)


@pytest.mark.parametrize("negative", ["", "a blue square"])
def test_sdxl_plain_prompts_give_exactly_the_tensors_of_diffusers(sdxl: Any, negative: str) -> None:
    """Both encoders' penultimate states side by side, text_encoder_2's pooled embeds; an
    empty negative is zeros (force_zeros_for_empty_prompt), as diffusers gives for none."""
    prompts = [PROMPT, "two green squares"]
    conditioning = encode(sdxl, prompts, [negative] * 2)
    expected = sdxl.encode_prompt(
        prompts, device="cpu", negative_prompt=[negative] * 2 if negative else None
    )
    ours = conditioning.pipeline_kwargs()
    names = [
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
    ]
    assert list(ours) == names
    for name, tensor in zip(names, expected, strict=True):
        assert torch.equal(ours[name], tensor), name
    assert ours["prompt_embeds"].shape == (2, 32, 64)
    assert bool(ours["negative_prompt_embeds"].any()) == bool(negative)


def test_sdxl_runs_end_to_end(sdxl: Any) -> None:
    conditioning = encode(sdxl, [PROMPT], [""])
    assert np.array_equal(
        draw(sdxl, 32, **conditioning.pipeline_kwargs()), draw(sdxl, 32, prompt=PROMPT)
    )
    long = encode(sdxl, ["(red:1.3) circle " * 20], [""])
    assert long.prompt_embeds.shape == (1, 2 * 32, 64)
    assert long.cut == (0,)
    # the pooled embeds come from the first window, unweighted (as A1111 pools); close, not
    # equal: two windows are encoded as a batch of two, whose sums round differently
    first = encode(sdxl, ["red circle " * 15], [""])
    torch.testing.assert_close(long.pooled_prompt_embeds, first.pooled_prompt_embeds)
    assert draw(sdxl, 32, **long.pipeline_kwargs()).shape == (1, 32, 32, 3)
