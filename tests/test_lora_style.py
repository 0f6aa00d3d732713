"""The embedded model's shipped LoRA and textual-inversion embedding, on the real pipeline.

The LoRA (`generation/embedded/loras/outline.safetensors`) draws a dark ring around the shapes:
its measured style grows with the weight, and weight 0 or a disabled LoRA gives exactly the base
model's pixels. The embedding (`generation/embedded/embeddings/warm.safetensors`) pulls the
shapes' colour toward red/orange/yellow in the prompt and away from them in the negative prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from generation.embedded.folder import load_pipeline
from generation.embedded.inversion import NEUTRAL_PROMPTS, WARM, colour_share, with_token
from generation.embedded.lora import generate, style_cases
from generation.embedded.scenes import render_scene
from generation.embedded.style import draw_outline, outline_score, ring_darkness
from generation.models import EMBEDDED_MODEL_DIR

LORA = EMBEDDED_MODEL_DIR.parent / "loras" / "outline.safetensors"
EMBEDDING = EMBEDDED_MODEL_DIR.parent / "embeddings" / "warm.safetensors"
PROMPTS = [case.prompt for case in style_cases(4)]
SEED = 3

# diffusers' DPM++ scheduler calls np.array on a torch tensor, which numpy 2 flags
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine two threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base_and_lora() -> tuple[list[np.ndarray], Any]:
    """The base model's pictures (drawn before any LoRA is loaded), and the pipeline with it."""
    pipe = load_pipeline(EMBEDDED_MODEL_DIR)
    base = generate(pipe, PROMPTS, SEED)
    pipe.load_lora_weights(str(LORA), adapter_name="outline")
    return base, pipe


@pytest.fixture(scope="module")
def lora_pipe(base_and_lora: tuple[list[np.ndarray], Any]) -> Any:
    return base_and_lora[1]


def _score(images: list[np.ndarray]) -> float:
    return float(np.mean([outline_score(image) for image in images]))


def test_the_style_measure_sees_the_outline_on_ground_truth() -> None:
    rng = np.random.default_rng(0)
    plain = [render_scene(case.scene, rng) for case in style_cases(8)]
    assert _score(plain) == 0.0
    assert _score([draw_outline(image) for image in plain]) == 1.0


def test_the_shipped_lora_loads_with_attention_and_conv_layers(lora_pipe: Any) -> None:
    names = [n for n, _ in lora_pipe.unet.named_modules() if n.endswith(".lora_A.outline")]
    assert any(".attn2.to_k." in n for n in names)
    assert any(".attn1.to_out.0." in n for n in names)
    assert any(".resnets.0.conv1." in n for n in names)
    assert lora_pipe.get_active_adapters() == ["outline"]


def test_weight_zero_and_disabled_lora_give_the_base_pixels(
    base_and_lora: tuple[list[np.ndarray], Any],
) -> None:
    base, lora_pipe = base_and_lora
    lora_pipe.set_adapters(["outline"], [0.0])
    for got, want in zip(generate(lora_pipe, PROMPTS, SEED), base, strict=True):
        np.testing.assert_array_equal(got, want)
    lora_pipe.set_adapters(["outline"], [1.0])
    lora_pipe.disable_lora()
    try:
        for got, want in zip(generate(lora_pipe, PROMPTS, SEED), base, strict=True):
            np.testing.assert_array_equal(got, want)
    finally:
        lora_pipe.enable_lora()


def test_the_outline_grows_with_the_weight(lora_pipe: Any) -> None:
    """Weights 0, 1 and 1.5 on 8 prompts (measured alone: ring darkness 0.015, 0.157, 0.316;
    outline score 0.0, 0.193, 0.416). Weight 0.5 is left out: its 0.02 sits in the noise of a
    few pictures (one full run drew the 4-prompt set's 0 and 0.5 both at 0.0)."""
    prompts = [case.prompt for case in style_cases(8)]
    darkness, scores = [], []
    for weight in (0.0, 1.0, 1.5):
        lora_pipe.set_adapters(["outline"], [weight])
        images = generate(lora_pipe, prompts, SEED)
        darkness.append(float(np.mean([ring_darkness(image) for image in images])))
        scores.append(_score(images))
    assert darkness[0] + 0.05 < darkness[1] < darkness[2] - 0.05, darkness
    assert scores[0] < 0.05 < 0.1 < scores[1] < scores[2], scores


@pytest.fixture(scope="module")
def warm_pipe() -> Any:
    pipe = load_pipeline(EMBEDDED_MODEL_DIR)
    pipe.load_textual_inversion(str(EMBEDDING), token="warm")
    return pipe


def test_the_embedded_tokenizer_takes_the_token(warm_pipe: Any) -> None:
    ids = warm_pipe.tokenizer("warm", add_special_tokens=False).input_ids
    assert ids == [len(warm_pipe.tokenizer) - 1]
    assert warm_pipe.text_encoder.get_input_embeddings().weight.shape[0] == len(warm_pipe.tokenizer)


def test_the_embedding_pulls_in_the_prompt_and_pushes_in_the_negative(warm_pipe: Any) -> None:
    prompts = list(NEUTRAL_PROMPTS)
    plain, _ = colour_share(generate(warm_pipe, prompts, SEED), WARM)
    tokened = [with_token(p, "warm") for p in prompts]
    assert tokened[0] == "a large warm circle in the centre on a white background"
    pulled, _ = colour_share(generate(warm_pipe, tokened, SEED), WARM)
    pushed, _ = colour_share(
        generate(warm_pipe, prompts, SEED, negative_prompt=["warm"] * len(prompts)), WARM
    )
    assert pushed < plain < pulled, (pushed, plain, pulled)
