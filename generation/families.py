"""Model families (SD 1.x, SD 2.x, SDXL): what tells them apart in a folder or a single
checkpoint file, and what each needs. Nothing here imports torch: a safetensors header is JSON.

SKELETON (issue 17): signatures fixed by the plan; bodies are filled by their owner.
"""

from __future__ import annotations

import enum
from pathlib import Path


class Family(enum.StrEnum):
    SD1 = "sd1"  # CLIP ViT-L text encoder (768), 512 px, epsilon prediction
    SD2 = "sd2"  # OpenCLIP ViT-H (1024), 768 px v-prediction (512 px base: epsilon)
    SDXL = "sdxl"  # two text encoders (768 + 1280 = 2048), pooled text embeds, 1024 px


# The UNet's cross-attention width: what a LoRA's attention projections must fit.
CROSS_ATTENTION_DIM = {Family.SD1: 768, Family.SD2: 1024, Family.SDXL: 2048}


def family_of_folder(folder: Path) -> Family:
    """A diffusers folder's family, from model_index.json and its UNet/text encoder configs.
    Raises ModelLoadError naming what was found when it is none of them."""
    raise NotImplementedError


def family_of_checkpoint(path: Path) -> Family:
    """A single ``.safetensors`` checkpoint's family, from its tensor names and shapes (read
    from the header only). Raises ModelLoadError for a corrupt file or an unknown layout."""
    raise NotImplementedError


def safetensors_header(path: Path) -> dict[str, dict[str, object]]:
    """The tensor table of a ``.safetensors`` file (name → dtype, shape, offsets) and its
    ``__metadata__``, without reading the tensors. Raises ModelLoadError for a corrupt file."""
    raise NotImplementedError
