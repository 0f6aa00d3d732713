"""Stable Diffusion 1.5- and SDXL-shaped pipelines built in code, with random weights, for
``sdbot bench gpu``: the published architectures' cost without their weights (nothing can be
downloaded here).

The configs are the published ones that the project ships for loading single checkpoint files
(``generation/configs/sd1`` and ``sdxl``: ``stable-diffusion-v1-5`` and
``stable-diffusion-xl-base-1.0``, their parameter counts checked in ``tests/test_families.py``),
tokenizers included: OpenAI CLIP's BPE vocabulary of 49,408 tokens, so prompts tokenize as
they do for the real models (77 tokens a window) and every id fits the text encoders' tables.

``tiny=True`` keeps each architecture (its blocks, self- and cross-attention, the ratio of the
cross-attention width to the UNet's, SDXL's two text encoders and added conditioning, the VAE's
8× reduction) with widths divided by 5 and fewer layers, so that a CPU builds, saves, loads and
draws it at 64² px in seconds. Imported only where torch is wanted (the bench's worker side).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from generation.families import Family
from generation.loading import shipped_config

TOKEN_WINDOW = 77  # CLIP's sequence length: what the UNet's cross-attention attends to
TINY_SIDE = 64


@dataclass(frozen=True)
class Shape:
    name: str
    family: Family
    side: int  # the native size, px
    guidance_scale: float  # > 1: classifier-free guidance, two UNet samples an image a step


SHAPES = {
    "sd15": Shape("sd15", Family.SD1, 512, 7.5),
    "sdxl": Shape("sdxl", Family.SDXL, 1024, 5.0),
}

# Widths divided by 5 (the norm's 32 groups still divide them), one resnet a level, at most two
# transformer layers a block, two text-encoder layers of 12 (20 for SDXL's second) heads of 12.
_TINY_UNET: dict[Family, dict[str, Any]] = {
    Family.SD1: {
        "block_out_channels": [64, 128, 256, 256],
        "layers_per_block": 1,
        "cross_attention_dim": 144,
        "sample_size": TINY_SIDE // 8,
    },
    Family.SDXL: {
        "block_out_channels": [64, 128, 256],
        "layers_per_block": 1,
        "attention_head_dim": [4, 8, 16],  # heads of 16 channels (published: of 64)
        "transformer_layers_per_block": [1, 2, 2],  # published: 1, 2, 10
        "cross_attention_dim": 144 + 240,  # the two text encoders' widths side by side
        "addition_time_embed_dim": 48,
        "projection_class_embeddings_input_dim": 240 + 6 * 48,  # pooled text + 6 size ids
        "sample_size": TINY_SIDE // 8,
    },
}
_TINY_VAE = {"block_out_channels": [32, 64, 128, 128], "layers_per_block": 1, "sample_size": 64}
_TINY_TEXT = {
    "text_encoder": {
        "hidden_size": 144,
        "intermediate_size": 576,
        "num_hidden_layers": 2,
        "projection_dim": 144,
    },
    "text_encoder_2": {
        "hidden_size": 240,
        "intermediate_size": 960,
        "num_hidden_layers": 2,
        "projection_dim": 240,
    },
}


def _shape(name: str) -> Shape:
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; known: {', '.join(SHAPES)}")
    return SHAPES[name]


def _json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def text_encoder_names(shape: str) -> tuple[str, ...]:
    return (
        ("text_encoder", "text_encoder_2")
        if _shape(shape).family is Family.SDXL
        else ("text_encoder",)
    )


def configs(shape: str, *, tiny: bool = False) -> dict[str, dict[str, Any]]:
    """The components' configs (unet, vae, scheduler, text_encoder[_2]): the published ones,
    or ``tiny``'s reductions of them."""
    family = _shape(shape).family
    folder = shipped_config(family)
    found = {
        "unet": _json(folder / "unet" / "config.json"),
        "vae": _json(folder / "vae" / "config.json"),
        "scheduler": _json(folder / "scheduler" / "scheduler_config.json"),
    }
    for name in text_encoder_names(shape):
        found[name] = _json(folder / name / "config.json")
    if tiny:
        found["unet"].update(_TINY_UNET[family])
        found["vae"].update(_TINY_VAE)
        for name in text_encoder_names(shape):
            found[name].update(_TINY_TEXT[name])
    return found


def side_of(shape: str, *, tiny: bool = False) -> int:
    return TINY_SIDE if tiny else _shape(shape).side


def quiet() -> None:
    """The libraries' notices and progress bars (saving, loading) are not the bench's output."""
    import diffusers.utils.logging
    import transformers.utils.logging

    for library in (diffusers.utils.logging, transformers.utils.logging):
        library.set_verbosity_error()
        library.disable_progress_bar()


def _components(shape: str, tiny: bool) -> dict[str, Any]:
    """The modules with freshly initialised weights, on torch's current default device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    found = configs(shape, tiny=tiny)
    parts: dict[str, Any] = {
        "unet": UNet2DConditionModel.from_config(found["unet"]),
        "vae": AutoencoderKL.from_config(found["vae"]),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**found["text_encoder"])),
    }
    if "text_encoder_2" in found:
        parts["text_encoder_2"] = CLIPTextModelWithProjection(
            CLIPTextConfig(**found["text_encoder_2"])
        )
    return parts


def parameter_counts(shape: str, *, tiny: bool = False) -> dict[str, int]:
    """Each component's parameters, counted on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        parts = _components(shape, tiny)
    return {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}


def build_folder(
    shape: str,
    folder: Path,
    *,
    tiny: bool = False,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Path:
    """Writes ``shape`` as a diffusers folder (safetensors, ``dtype``) with random weights drawn
    from ``seed`` on ``device``; what ``generation.loading.load_pipeline`` loads as any
    folder of its family. Returns the folder."""
    import diffusers
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    quiet()
    info = _shape(shape)
    found = configs(shape, tiny=tiny)
    # 1. The weights: drawn where they will run and in their dtype (a GPU draws SDXL's 3.5 B
    # in seconds; no float32 copy doubles the memory).
    torch.manual_seed(seed)
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            parts = _components(shape, tiny)
    finally:
        torch.set_default_dtype(before)
    # 2. The scheduler and tokenizers, as published.
    scheduler_class = getattr(diffusers, found["scheduler"]["_class_name"])
    parts["scheduler"] = scheduler_class.from_config(found["scheduler"])
    shipped = shipped_config(info.family)
    parts["tokenizer"] = CLIPTokenizer.from_pretrained(str(shipped / "tokenizer"))
    # 3. The pipeline, saved as its family's folder.
    if info.family is Family.SDXL:
        parts["tokenizer_2"] = CLIPTokenizer.from_pretrained(str(shipped / "tokenizer_2"))
        pipe = StableDiffusionXLPipeline(**parts, force_zeros_for_empty_prompt=True)
    else:
        pipe = StableDiffusionPipeline(
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    del pipe, parts
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return folder


def unet_pass_flops(unet_config: dict[str, Any], side: int, batch: int) -> int:
    """FLOPs of one UNet call on ``batch`` latents of a ``side`` px picture (a multiply-add is
    two), counted by ``torch.utils.flop_counter`` on the meta device: exact for the config,
    whatever the machine. Classifier-free guidance is ``batch=2`` an image."""
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    latent = side // 8
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        kwargs: dict[str, Any] = {}
        if unet_config.get("addition_embed_type") == "text_time":
            ids = 6  # original size, crop corner, target size
            pooled = (
                unet_config["projection_class_embeddings_input_dim"]
                - ids * unet_config["addition_time_embed_dim"]
            )
            kwargs["added_cond_kwargs"] = {
                "text_embeds": torch.empty(batch, pooled),
                "time_ids": torch.empty(batch, ids),
            }
        with FlopCounterMode(display=False) as counter:
            unet(
                torch.empty(batch, unet_config["in_channels"], latent, latent),
                torch.empty(batch),
                encoder_hidden_states=torch.empty(
                    batch, TOKEN_WINDOW, unet_config["cross_attention_dim"]
                ),
                **kwargs,
            )
    return int(counter.get_total_flops())


def vae_decode_flops(vae_config: dict[str, Any], side: int) -> int:
    """FLOPs of decoding one ``side`` px picture's latents (meta device, as above)."""
    from diffusers import AutoencoderKL
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        vae = AutoencoderKL.from_config(vae_config)
        with FlopCounterMode(display=False) as counter:
            vae.decode(torch.empty(1, vae_config["latent_channels"], side // 8, side // 8))
    return int(counter.get_total_flops())
