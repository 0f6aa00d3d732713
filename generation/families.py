"""Model families (SD 1.x, SD 2.x, SDXL): what tells them apart in a folder or a single
checkpoint file, and what each needs. Nothing here imports torch: a safetensors header is JSON.

A family is a layout, not a size: a tiny model built in code belongs to the family whose parts
it has. One CLIP text encoder is SD 1.x (CLIP's quick-GELU, convolutional attention
projections in the UNet) or SD 2.x (OpenCLIP's GELU, linear projections); two text encoders
are SDXL. Published models are told apart by their widths alone (768, 1024, 2048).
"""

from __future__ import annotations

import enum
import json
import struct
from pathlib import Path
from typing import Any

from generation.errors import ModelLoadError


class Family(enum.StrEnum):
    SD1 = "sd1"  # CLIP ViT-L text encoder (768), 512 px, epsilon prediction
    SD2 = "sd2"  # OpenCLIP ViT-H (1024), 768 px v-prediction (512 px base: epsilon)
    SDXL = "sdxl"  # two text encoders (768 + 1280 = 2048), pooled text embeds, 1024 px


# The UNet's cross-attention width: what a LoRA's attention projections must fit.
CROSS_ATTENTION_DIM = {Family.SD1: 768, Family.SD2: 1024, Family.SDXL: 2048}

# A header longer than this is not a checkpoint's tensor table (SDXL's is ~250 KB).
MAX_HEADER_BYTES = 100 * 1024 * 1024

# Tensor-name prefixes of the LDM (original Stability) checkpoint layout.
_SDXL_PREFIX = "conditioner.embedders.1."  # the OpenCLIP ViT-bigG beside CLIP ViT-L
_SD2_PREFIX = "cond_stage_model.model."  # OpenCLIP ViT-H
_SD1_PREFIX = "cond_stage_model.transformer."  # CLIP ViT-L (transformers' names)
_UNET_PREFIX = "model.diffusion_model."


def safetensors_header(path: Path) -> dict[str, dict[str, object]]:
    """The tensor table of a ``.safetensors`` file (name → dtype, shape, offsets) and its
    ``__metadata__``, without reading the tensors. Raises ModelLoadError for a corrupt file."""
    try:
        with path.open("rb") as file:
            size_bytes = file.read(8)
            if len(size_bytes) < 8:
                raise ModelLoadError(f"{path} is not a safetensors file: shorter than 8 bytes")
            (size,) = struct.unpack("<Q", size_bytes)
            file_size = path.stat().st_size
            if size > MAX_HEADER_BYTES or 8 + size > file_size:
                raise ModelLoadError(
                    f"{path} is not a safetensors file (or is cut short): its header claims "
                    f"{size} bytes, the file has {file_size}"
                )
            raw = file.read(size)
    except OSError as error:
        raise ModelLoadError(f"could not read {path}: {error}") from error
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ModelLoadError(f"{path} has a corrupt safetensors header: {error}") from error
    if not isinstance(header, dict) or not all(isinstance(v, dict) for v in header.values()):
        raise ModelLoadError(f"{path} has a corrupt safetensors header: not a tensor table")
    _check_extent(path, header, file_size - 8 - size)
    return header


def _check_extent(path: Path, header: dict[str, Any], data_bytes: int) -> None:
    """A file cut short after its header: the tensors' offsets run past its end."""
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise ModelLoadError(f"{path} has a corrupt safetensors header: {name} has no offsets")
        end = max(end, int(offsets[1]))
    if end > data_bytes:
        raise ModelLoadError(
            f"{path} is cut short: its tensors need {end} bytes after the header, "
            f"it holds {data_bytes}"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not read {path}: {error}") from error
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


def family_of_folder(folder: Path) -> Family:
    """A diffusers folder's family, from model_index.json and its UNet/text encoder configs.
    Raises ModelLoadError naming what was found when it is none of them."""
    index = _read_json(folder / "model_index.json")
    class_name = str(index.get("_class_name", ""))
    if "XL" in class_name or "text_encoder_2" in index:
        return Family.SDXL
    if "unet" not in index or "text_encoder" not in index:
        raise ModelLoadError(
            f"{folder} is a {class_name or 'diffusers'} folder without a UNet and text encoder: "
            "not Stable Diffusion 1.x, 2.x or XL"
        )
    unet = _read_json(folder / "unet" / "config.json")
    encoder = _read_json(folder / "text_encoder" / "config.json")
    width = unet.get("cross_attention_dim")
    if width == CROSS_ATTENTION_DIM[Family.SD2] or encoder.get("hidden_size") == 1024:
        return Family.SD2
    if width == CROSS_ATTENTION_DIM[Family.SD1]:
        return Family.SD1
    # A small model: the family whose layout it has.
    if unet.get("use_linear_projection") or encoder.get("hidden_act") == "gelu":
        return Family.SD2
    return Family.SD1


def family_of_checkpoint(path: Path) -> Family:
    """A single ``.safetensors`` checkpoint's family, from its tensor names and shapes (read
    from the header only). Raises ModelLoadError for a corrupt file or an unknown layout."""
    if path.suffix != ".safetensors":
        raise ModelLoadError(
            f"{path}: only .safetensors checkpoints are loaded (a {path.suffix or 'suffix-less'} "
            "file may be a pickle, which runs code when loaded); convert it to .safetensors"
        )
    names = [name for name in safetensors_header(path) if name != "__metadata__"]
    if not any(name.startswith(_UNET_PREFIX) for name in names):
        raise ModelLoadError(
            f"{path} is not a Stable Diffusion checkpoint: no {_UNET_PREFIX}* tensors "
            f"({len(names)} tensors; a LoRA, an embedding or a diffusers component?)"
        )
    for prefix, family in (
        (_SDXL_PREFIX, Family.SDXL),
        (_SD2_PREFIX, Family.SD2),
        (_SD1_PREFIX, Family.SD1),
    ):
        if any(name.startswith(prefix) for name in names):
            return family
    raise ModelLoadError(
        f"{path} has a UNet but no text encoder this bot knows (expected {_SD1_PREFIX}*, "
        f"{_SD2_PREFIX}* or {_SDXL_PREFIX}* tensors)"
    )
