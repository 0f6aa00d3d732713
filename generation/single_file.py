"""A diffusers Stable Diffusion pipeline written as one LDM-format checkpoint (the layout of
the original Stability releases and of community ``.safetensors`` files): the inverse of what
diffusers' ``from_single_file`` reads. Tests make single files of the project's own models with
it; ``from_single_file(path, config=<the folder>)`` loads them back.

The names, from the original ``ldm`` code's module tree:

- UNet (``model.diffusion_model.``): ``input_blocks.0.0`` is ``conv_in``; then each level's
  ``layers_per_block`` resnets (``.0``) with their attention (``.1``), and a downsampler
  (``.0.op``) except at the last level; ``middle_block.0/1/2`` are resnet, attention, resnet;
  ``output_blocks`` hold each level's ``layers_per_block + 1`` resnets and attentions, the
  upsampler after them (``.1.conv``, or ``.2.conv`` after an attention); ``time_embed.0/2``,
  ``label_emb.0.0/2`` (SDXL's added embedding) and ``out.0/2`` (norm and conv out). A resnet's
  ``norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut`` are ``in_layers.0, in_layers.2,
  emb_layers.1, out_layers.0, out_layers.3, skip_connection``; attentions keep their names.
- VAE (``first_stage_model.``): ``down.{i}.block.{j}``/``downsample``, ``up.{n-1-i}`` (the
  decoder's levels counted from the bottom), ``mid.block_1/2``, ``mid.attn_1`` (``norm, q, k,
  v, proj_out`` as 1×1 convolutions), ``norm_out``, ``nin_shortcut``.
- CLIP text encoder (SD 1.x, SDXL's first): transformers' own names under
  ``cond_stage_model.transformer.text_model.`` (``conditioner.embedders.0.transformer.``).
- OpenCLIP text encoder (SD 2.x under ``cond_stage_model.model.``, SDXL's second under
  ``conditioner.embedders.1.model.``): ``token_embedding``, ``positional_embedding``,
  ``transformer.resblocks.{n}`` with ``ln_1, attn.in_proj_*`` (q, k, v stacked),
  ``attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj``, ``ln_final`` and ``text_projection``
  (transposed: OpenCLIP multiplies ``x @ P``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from generation.families import Family

Tensors = dict[str, torch.Tensor]

_UNET = "model.diffusion_model."
_VAE = "first_stage_model."
_CLIP = {
    Family.SD1: "cond_stage_model.transformer.",
    Family.SDXL: "conditioner.embedders.0.transformer.",
}
_OPEN_CLIP = {Family.SD2: "cond_stage_model.model.", Family.SDXL: "conditioner.embedders.1.model."}

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_TOP = {"conv_norm_out": "norm_out"}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def _resnet(rest: str) -> str:
    part, _, tail = rest.partition(".")
    return f"{_UNET_RESNET.get(part, part)}.{tail}"


def unet_to_ldm(state: Mapping[str, torch.Tensor], layers_per_block: int) -> Tensors:
    """A diffusers UNet2DConditionModel's state dict under LDM names."""
    per_level = layers_per_block + 1
    out: Tensors = {}
    for key, value in state.items():
        out[_UNET + _unet_key(key, per_level, state)] = value
    return out


def _unet_key(key: str, per_level: int, state: Mapping[str, torch.Tensor]) -> str:
    module, _, param = key.rpartition(".")
    if module in _UNET_TOP:
        return f"{_UNET_TOP[module]}.{param}"
    if match := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        level, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        block = 1 + level * per_level + index
        return (
            f"input_blocks.{block}.0.{_resnet(rest)}"
            if kind == "resnets"
            else f"input_blocks.{block}.1.{rest}"
        )
    if match := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{1 + int(match[1]) * per_level + per_level - 1}.0.op.{match[2]}"
    if match := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key):
        kind, index, rest = match[1], int(match[2]), match[3]
        if kind == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{2 * index}.{_resnet(rest)}"
    if match := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        level, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        block = level * per_level + index
        return (
            f"output_blocks.{block}.0.{_resnet(rest)}"
            if kind == "resnets"
            else f"output_blocks.{block}.1.{rest}"
        )
    if match := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        level = int(match[1])
        has_attention = any(k.startswith(f"up_blocks.{level}.attentions.") for k in state)
        block = level * per_level + per_level - 1
        return f"output_blocks.{block}.{2 if has_attention else 1}.conv.{match[2]}"
    raise ValueError(f"UNet tensor {key} has no LDM name")


def vae_to_ldm(state: Mapping[str, torch.Tensor], levels: int) -> Tensors:
    """A diffusers AutoencoderKL's state dict under LDM names."""
    out: Tensors = {}
    for key, value in state.items():
        name, value = _vae_key(key, value, levels)
        out[_VAE + name] = value
    return out


def _vae_key(key: str, value: torch.Tensor, levels: int) -> tuple[str, torch.Tensor]:
    coder, _, rest = key.partition(".")
    if coder not in ("encoder", "decoder"):
        return key, value  # quant_conv, post_quant_conv
    module, _, param = rest.rpartition(".")
    if module in _VAE_TOP:
        return f"{coder}.{_VAE_TOP[module]}.{param}", value
    if match := re.fullmatch(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
        level = int(match[2]) if match[1] == "down" else levels - 1 - int(match[2])
        tail = match[4].replace("conv_shortcut", "nin_shortcut")
        return f"{coder}.{match[1]}.{level}.block.{match[3]}.{tail}", value
    if match := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.(.+)", rest):
        return f"{coder}.down.{match[1]}.downsample.{match[2]}", value
    if match := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", rest):
        return f"{coder}.up.{levels - 1 - int(match[1])}.upsample.{match[2]}", value
    if match := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest):
        return f"{coder}.mid.block_{int(match[1]) + 1}.{match[2]}", value
    if match := re.fullmatch(r"mid_block\.attentions\.0\.(.+)\.(weight|bias)", rest):
        name = _VAE_ATTENTION[match[1]]
        if match[2] == "weight" and name != "norm":
            value = value[:, :, None, None]  # LDM's attention projections are 1×1 convolutions
        return f"{coder}.mid.attn_1.{name}.{match[2]}", value
    if module in ("conv_in", "conv_out"):
        return key, value
    raise ValueError(f"VAE tensor {key} has no LDM name")


def clip_to_ldm(state: Mapping[str, torch.Tensor], prefix: str) -> Tensors:
    """transformers' CLIPTextModel names under ``prefix`` (flattened or not)."""
    return {prefix + "text_model." + key.removeprefix("text_model."): v for key, v in state.items()}


def open_clip_to_ldm(state: Mapping[str, torch.Tensor], prefix: str) -> Tensors:
    """A CLIP text encoder (with or without projection) under OpenCLIP's names."""
    flat = {key.removeprefix("text_model."): value for key, value in state.items()}
    out: Tensors = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        if key == "embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = value
        elif key == "embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key.startswith("final_layer_norm."):
            out[prefix + "ln_final." + key.rpartition(".")[2]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T
        elif match := re.fullmatch(
            r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key
        ):
            qkv.setdefault((int(match[1]), match[3]), {})[match[2]] = value
        elif match := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key):
            name = _OPEN_CLIP_LAYER[match[2]]
            out[f"{prefix}transformer.resblocks.{match[1]}.{name}.{match[3]}"] = value
        elif key != "embeddings.position_ids":
            raise ValueError(f"text encoder tensor {key} has no OpenCLIP name")
    for (layer, param), parts in qkv.items():
        stacked = torch.cat([parts["q"], parts["k"], parts["v"]])
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{param}"] = stacked
    if prefix + "text_projection" not in out:  # SD 2.x: OpenCLIP has one, diffusers drops it
        width = out[prefix + "positional_embedding"].shape[-1]
        out[prefix + "text_projection"] = torch.eye(
            width, dtype=out[prefix + "positional_embedding"].dtype
        )
    return out


def checkpoint_tensors(pipe: Any, family: Family) -> Tensors:
    """Every weight of ``pipe`` (UNet, VAE, text encoders) under LDM names."""
    unet_config, vae_config = pipe.unet.config, pipe.vae.config
    tensors = unet_to_ldm(pipe.unet.state_dict(), int(unet_config.layers_per_block))
    tensors |= vae_to_ldm(pipe.vae.state_dict(), len(vae_config.block_out_channels))
    encoder = pipe.text_encoder.state_dict()
    if family is Family.SD2:
        tensors |= open_clip_to_ldm(encoder, _OPEN_CLIP[family])
    else:
        tensors |= clip_to_ldm(encoder, _CLIP[family])
    if family is Family.SDXL:
        tensors |= open_clip_to_ldm(pipe.text_encoder_2.state_dict(), _OPEN_CLIP[family])
    return {k: v for k, v in tensors.items() if not k.endswith("position_ids")}


def write_checkpoint(
    pipe: Any, family: Family, out: Path, dtype: torch.dtype | None = None
) -> Path:
    """``pipe`` as one LDM-format ``.safetensors`` file at ``out``."""
    from safetensors.torch import save_file

    tensors = checkpoint_tensors(pipe, family)
    prepared = {
        name: (value.to(dtype) if dtype is not None and value.is_floating_point() else value)
        .detach()
        .cpu()
        .contiguous()
        for name, value in tensors.items()
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(prepared, str(out), metadata={"format": "pt", "sdbot.family": family.value})
    return out


def write_checkpoint_of_folder(folder: Path, out: Path, dtype: torch.dtype | None = None) -> Path:
    """A diffusers folder (any family) as one LDM-format ``.safetensors`` file."""
    from diffusers import AutoPipelineForText2Image

    from generation.families import family_of_folder

    family = family_of_folder(folder)
    pipe = AutoPipelineForText2Image.from_pretrained(str(folder), local_files_only=True)
    return write_checkpoint(pipe, family, out, dtype)
