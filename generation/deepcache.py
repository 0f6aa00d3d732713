"""DeepCache-style feature reuse on a diffusers ``UNet2DConditionModel`` (our own code, after
the idea of Ma, Fang and Wang, "DeepCache: Accelerating Diffusion Models for Free", 2023).

Between neighbouring denoising steps a UNet's deep features change little and its shallow ones
much. So every N-th UNet evaluation of a pipeline call runs the whole UNet and keeps the
feature map that enters its last (shallowest) up block; the evaluations in between run only
the shallow path: the time (and SDXL's added) embeddings, ``conv_in``, the first down block,
the last up block fed the kept deep features and the fresh skip connections, and
``conv_out``. A shallow evaluation given the very inputs of the whole one it follows gives
that whole evaluation's output exactly (tests/test_fast_path.py holds it to that).

The whole evaluation is diffusers' own forward, untouched; the shallow one calls the model's
own blocks and embedding helpers in the order its forward does. T2I-Adapter residuals and
image-hint models always run whole. Imported only by the worker: it imports torch.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.utils.peft_utils import apply_lora_scale

MAX_INTERVAL = 10  # beyond it the kept features are too stale to draw the prompt's scene


def unsupported(unet: Any) -> str | None:
    """Why DeepCache cannot run on ``unet`` (None: it can)."""
    if not hasattr(unet, "down_blocks") or not hasattr(unet, "up_blocks"):
        return f"{type(unet).__name__} has no down and up blocks"
    if len(unet.down_blocks) < 2 or len(unet.up_blocks) < 2:
        return "the UNet has a single level: nothing deep to keep"
    if unet.config.get("addition_embed_type") == "image_hint":
        return "image-hint UNets (Kandinsky) are not supported"
    skips = len(unet.up_blocks[-1].resnets)
    if skips > 1 + len(unet.down_blocks[0].resnets):
        return "the last up block takes skips from deeper than the first down block"
    return None


class DeepCache:
    """When a UNet evaluation may run shallow, and the deep features it then reuses.

    ``interval``: 0 or 1 runs every evaluation whole; N ≥ 2 runs the first evaluation of a
    pipeline call whole, then N − 1 shallow ones, then a whole one, and so on. ``begin()``
    starts a pipeline call (the features of the last one are dropped); a change of the
    sample's shape, dtype or device runs whole too. ``whole`` and ``shallow`` count the
    evaluations run each way, for benchmarks and tests.
    """

    def __init__(self, unet: Any, interval: int = 0) -> None:
        if reason := unsupported(unet):
            raise ValueError(f"DeepCache cannot run on this model: {reason}")
        self.unet = unet
        self.interval = interval
        self.whole = 0
        self.shallow = 0
        self._deep: torch.Tensor | None = None
        self._key: tuple[Any, ...] | None = None
        self._since_whole = 0
        self._keeping = False
        unet.up_blocks[-1].register_forward_pre_hook(self._keep, with_kwargs=True)

    def begin(self) -> None:
        self._deep, self._key, self._since_whole = None, None, 0

    def _keep(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._keeping:
            self._deep = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    def __call__(self, forward: Any, shallow: Any, *args: Any, **kwargs: Any) -> Any:
        """One UNet evaluation: ``forward`` (whole) or ``shallow`` (given the kept features
        as ``deep=``); both take the UNet's forward arguments."""
        sample = args[0] if args else kwargs["sample"]
        key = (tuple(sample.shape), sample.dtype, sample.device)
        adapter = kwargs.get("down_intrablock_additional_residuals") is not None or (
            kwargs.get("down_block_additional_residuals") is not None
            and kwargs.get("mid_block_additional_residual") is None
        )  # a T2I-Adapter's residuals: diffusers adds them inside the deep blocks too
        plain = self.interval < 2 or adapter
        if (
            not plain
            and self._deep is not None
            and key == self._key
            and self._since_whole < self.interval - 1
        ):
            self._since_whole += 1
            self.shallow += 1
            return shallow(*args, deep=self._deep, **kwargs)
        self.whole += 1
        self._keeping = not plain
        try:
            output = forward(*args, **kwargs)
        finally:
            self._keeping = False
        self._key, self._since_whole = (key, 0) if not plain else (None, 0)
        if plain:
            self._deep = None
        return output


@apply_lora_scale("cross_attention_kwargs")  # type: ignore[untyped-decorator]  # diffusers' is untyped
def shallow_forward(
    unet: Any,
    sample: torch.Tensor,
    timestep: torch.Tensor | float | int,
    encoder_hidden_states: torch.Tensor,
    class_labels: torch.Tensor | None = None,
    timestep_cond: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    cross_attention_kwargs: dict[str, Any] | None = None,
    added_cond_kwargs: dict[str, torch.Tensor] | None = None,
    down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
    mid_block_additional_residual: torch.Tensor | None = None,
    encoder_attention_mask: torch.Tensor | None = None,
    return_dict: bool = True,
    *,
    deep: torch.Tensor,
) -> Any:
    """The UNet's output from its shallow path and ``deep``, the features a whole evaluation
    fed its last up block (the same arguments as ``UNet2DConditionModel.forward``)."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

    # 1. Masks as biases, as the whole forward makes them.
    if attention_mask is not None:
        attention_mask = ((1 - attention_mask.to(sample.dtype)) * -10000.0).unsqueeze(1)
    if encoder_attention_mask is not None:
        bias = (1 - encoder_attention_mask.to(sample.dtype)) * -10000.0
        encoder_attention_mask = bias.unsqueeze(1)
    if unet.config.center_input_sample:
        sample = 2 * sample - 1.0

    # 2. Time, class and added (SDXL) embeddings; the text states as the model takes them.
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), timestep_cond)
    class_emb = unet.get_class_embed(sample=sample, class_labels=class_labels)
    if class_emb is not None:
        concat = unet.config.class_embeddings_concat
        emb = torch.cat([emb, class_emb], dim=-1) if concat else emb + class_emb
    aug_emb = unet.get_aug_embed(
        emb=emb, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs
    )
    emb = emb + aug_emb if aug_emb is not None else emb
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    encoder_hidden_states = unet.process_encoder_hidden_states(
        encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs
    )
    attention = {
        "encoder_hidden_states": encoder_hidden_states,
        "attention_mask": attention_mask,
        "cross_attention_kwargs": cross_attention_kwargs,
        "encoder_attention_mask": encoder_attention_mask,
    }

    # 3. conv_in and the first down block: the skips the last up block takes.
    sample = unet.conv_in(sample)
    first, last = unet.down_blocks[0], unet.up_blocks[-1]
    if getattr(first, "has_cross_attention", False):
        _, res_samples = first(hidden_states=sample, temb=emb, **attention)
    else:
        _, res_samples = first(hidden_states=sample, temb=emb)
    skips = ((sample, *res_samples))[: len(last.resnets)]
    if down_block_additional_residuals is not None and mid_block_additional_residual is not None:
        skips = tuple(s + r for s, r in zip(skips, down_block_additional_residuals, strict=False))

    # 4. The last up block on the kept deep features, then the output convolution.
    if getattr(last, "has_cross_attention", False):
        sample = last(
            hidden_states=deep, temb=emb, res_hidden_states_tuple=skips, upsample_size=None,
            **attention,
        )  # fmt: skip
    else:
        sample = last(
            hidden_states=deep, temb=emb, res_hidden_states_tuple=skips, upsample_size=None
        )
    if unet.conv_norm_out:
        sample = unet.conv_act(unet.conv_norm_out(sample))
    sample = unet.conv_out(sample)
    return UNet2DConditionOutput(sample=sample) if return_dict else (sample,)
