"""Tiny SD 2.x-style and SDXL-style pipelines built in code (random weights, the embedded
model's tokenizer), for tests of loading, family detection and the picker.

A family is a layout (generation.families): the SD 2.x one has an OpenCLIP-style text encoder
(GELU) and linear attention projections in its UNet, and predicts v; the SDXL one has two text
encoders (the second with a projection, giving the pooled embedding), the UNet's added
time/text embedding, and the two encoders' widths concatenated as its cross-attention width.
Widths are small (32 and 64), so each pipeline builds in well under a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

from generation.families import Family
from generation.models import EMBEDDED_MODEL_DIR
from generation.single_file import write_checkpoint

SIDE = 32  # pixels: a 2-level VAE gives 16×16 latents
_TIME_EMBED = 8  # SDXL's per-number embedding of (original size, crop, target size)


def tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(str(EMBEDDED_MODEL_DIR / "tokenizer"))


def _encoder_config(tok: CLIPTokenizer, hidden: int, act: str, **extra: Any) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=tok.model_max_length,
        hidden_act=act,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **extra,
    )


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=SIDE,
    )


def _unet(cross_attention_dim: int, **extra: Any) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=SIDE // 2,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=(4, 8),
        norm_num_groups=8,
        use_linear_projection=True,
        **extra,
    )


def _scheduler(prediction: str) -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=prediction,
        timestep_spacing="leading",
        steps_offset=1,
    )


def tiny_sd2(seed: int = 0) -> StableDiffusionPipeline:
    """SD 2.x's layout: one GELU text encoder, linear projections, v-prediction."""
    torch.manual_seed(seed)
    tok = tokenizer()
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_encoder_config(tok, 32, "gelu")),
        tokenizer=tok,
        unet=_unet(32),
        scheduler=_scheduler("v_prediction"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_sdxl(seed: int = 0) -> StableDiffusionXLPipeline:
    """SDXL's layout: CLIP (32 wide) + OpenCLIP-style with projection (64 wide, pooled 32)."""
    torch.manual_seed(seed)
    tok = tokenizer()
    second = _encoder_config(tok, 64, "gelu", projection_dim=32)
    return StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=CLIPTextModel(_encoder_config(tok, 32, "quick_gelu")),
        text_encoder_2=CLIPTextModelWithProjection(second),
        tokenizer=tok,
        tokenizer_2=tokenizer(),
        unet=_unet(
            32 + 64,
            addition_embed_type="text_time",
            addition_time_embed_dim=_TIME_EMBED,
            projection_class_embeddings_input_dim=6 * _TIME_EMBED + 32,
        ),
        scheduler=_scheduler("epsilon"),
    )


BUILDERS = {Family.SD2: tiny_sd2, Family.SDXL: tiny_sdxl}


def save(pipe: Any, family: Family, root: Path, name: str | None = None) -> tuple[Path, Path]:
    """``pipe`` saved as a diffusers folder and as one LDM checkpoint beside it."""
    name = name or f"tiny-{family}"
    folder = root / name
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder, write_checkpoint(pipe, family, root / f"{name}.safetensors")


def build_saved(family: Family, root: Path) -> tuple[Path, Path]:
    """A tiny model of ``family`` (SD 1.x: the embedded model) as a folder and a single file."""
    if family is Family.SD1:
        from generation.single_file import write_checkpoint_of_folder

        return EMBEDDED_MODEL_DIR, write_checkpoint_of_folder(
            EMBEDDED_MODEL_DIR, root / "embedded.safetensors"
        )
    return save(BUILDERS[family](), family, root)
