"""The embedded model's parts, built fresh from their configs (nothing is downloaded).

Choices measured while planning (see the training notes): a 4x VAE so 64 px pictures become
16x16x4 latents; a small UNet with cross-attention at its 8x8 and 4x4 levels; a 3-layer CLIP
text encoder; v-prediction with a zero-terminal-SNR schedule and trailing timestep spacing,
without which a tiny model ignores the prompt at the noisy steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

LATENT_SIZE = 16
LATENT_CHANNELS = 4
TEXT_HIDDEN = 128
MAX_TOKENS = 32
_LOGVAR_BIAS = -6.0  # keeps a fresh VAE's posterior noise from drowning its decoder


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a training with ``threads`` CPU threads (None: as it is), then put the count back.

    The thread count decides how CPU reductions are split, so two trainings agree bit for bit
    only with the same count; restoring it keeps a training from changing a caller's numerics.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class UNetShape:
    """The UNet's widths; the default is what the CPU recipe and the shipped model use."""

    block_out_channels: tuple[int, int, int] = (48, 96, 128)
    # Cross-attention at 8x8 and 4x4; at 16x16 it doubled the step time and broke the 2 s
    # budget for a 4-variant batch on CPU.
    cross_attention: tuple[bool, bool, bool] = (False, True, True)
    layers_per_block: int = 1
    attention_head_dim: int = 32


def build_vae() -> AutoencoderKL:
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=64,
    )
    with torch.no_grad():
        assert vae.quant_conv is not None  # built by default (use_quant_conv=True)
        vae.quant_conv.bias[LATENT_CHANNELS:].fill_(_LOGVAR_BIAS)
    return vae


def build_unet(shape: UNetShape) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=tuple(
            "CrossAttnDownBlock2D" if a else "DownBlock2D" for a in shape.cross_attention
        ),
        up_block_types=tuple(
            "CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(shape.cross_attention)
        ),
        block_out_channels=shape.block_out_channels,
        layers_per_block=shape.layers_per_block,
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=shape.attention_head_dim,
        norm_num_groups=16,
    )


def build_text_encoder(vocab_size: int, bos_id: int, eos_id: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=4 * TEXT_HIDDEN,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return CLIPTextModel(config)


def build_training_scheduler() -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
        steps_offset=1,  # unused with trailing spacing; 0 makes diffusers warn
    )


def build_inference_scheduler(training: DDPMScheduler) -> DPMSolverMultistepScheduler:
    """DPM++ 2M that keeps v-prediction, zero terminal SNR and trailing spacing."""
    return DPMSolverMultistepScheduler.from_config(training.config)
