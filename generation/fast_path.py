"""The fast path on a device: switches applied to a loaded pipeline, each on its own and each
measured (``sdbot bench gpu``, ``sdbot bench adherence --fast``).

fp16 with PyTorch's scaled-dot-product attention is already the CUDA default, with no switch:
``resolve_dtype("auto", "cuda")`` is float16 (``SDBOT_DTYPE=bfloat16`` for bf16) and diffusers
gives every attention ``AttnProcessor2_0`` (SDPA). The switches add to that:

- ``channels_last``: the UNet's and VAE's memory format (convolutions on tensor cores).
- ``fuse_qkv``: one projection for attention's query, key and value (UNet and VAE). A batch
  with LoRAs runs the unfused projections, which carry the adapters; see
  :func:`fused_attention`.
- ``compile``: ``torch.compile`` of the UNet (generation/fast_unet.py); batches are padded up
  to one of ``batch_sizes`` (:func:`call_pipeline`) so the queue's batches never recompile.
- ``vae_slicing`` / ``vae_tiling``: decode a batch one image at a time / a big image in tiles.
- ``deepcache:N``: the whole UNet every N-th evaluation, its shallow path in between
  (generation/deepcache.py); a quality/speed trade.

Light to import: the bot process reads :class:`FastPath` from the settings; only the worker
applies it (:func:`apply_fast_path`), after a model loads and before its first call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator

log = logging.getLogger(__name__)

SWITCHES = ("channels_last", "fuse_qkv", "compile", "vae_slicing", "vae_tiling")
DEEPCACHE_INTERVALS = range(2, 11)  # generation.deepcache.MAX_INTERVAL
PAD_SEED = 0  # the noise of the images a padded batch adds (and drops)


@dataclass(frozen=True)
class FastPath:
    """How the worker runs a loaded model faster, each switch on its own.

    ``channels_last``: the UNet's (and VAE's) memory format. ``fuse_qkv``: one projection for
    attention's query, key and value. ``compile``: ``torch.compile`` of the UNet (opt-in; a
    call's batch is padded up to one of ``batch_sizes`` so that the queue's batches never
    recompile). ``vae_slicing`` / ``vae_tiling``: decode a batch one image at a time / a big
    image in tiles. ``deepcache_interval``: 0 off; N runs the whole UNet every N-th step and
    reuses its deep features in between (a quality/speed trade).
    """

    channels_last: bool = False
    fuse_qkv: bool = False
    compile: bool = False
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    vae_slicing: bool = False
    vae_tiling: bool = False
    deepcache_interval: int = 0

    @classmethod
    def parse(cls, text: str) -> FastPath:
        """``SDBOT_FAST_PATH``: switch names, comma-separated (``deepcache:N`` takes its
        interval, 3 when left out); raises ValueError naming the bad value and what is allowed."""
        switches: dict[str, object] = {}
        low, high = DEEPCACHE_INTERVALS[0], DEEPCACHE_INTERVALS[-1]
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, colon, value = item.partition(":")
            if name == "deepcache":
                interval = value.strip() or "3"
                if not interval.isdigit() or int(interval) not in DEEPCACHE_INTERVALS:
                    raise ValueError(
                        f"deepcache interval must be a whole number from {low} to {high} "
                        f"(deepcache:3), got {item!r}"
                    )
                switches["deepcache_interval"] = int(interval)
            elif name in SWITCHES and not colon:
                switches[name] = True
            else:
                raise ValueError(
                    f"unknown fast-path switch {item!r}; known: {', '.join(SWITCHES)}, "
                    f"deepcache:N (N from {low} to {high})"
                )
        return cls(**switches)  # type: ignore[arg-type]

    def describe(self) -> str:
        """The switches as ``SDBOT_FAST_PATH`` spells them ("" when none)."""
        names = [name for name in SWITCHES if getattr(self, name)]
        if self.deepcache_interval:
            names.append(f"deepcache:{self.deepcache_interval}")
        return ",".join(names)


def check_fast_path(text: str) -> str:
    """``text`` when it parses (the settings' validator), else ValueError saying why."""
    FastPath.parse(text)
    return text


FastPathText = Annotated[str, AfterValidator(check_fast_path)]  # SDBOT_FAST_PATH, checked


def apply_fast_path(pipe: Any, fast: FastPath, device: str) -> tuple[str, ...]:
    """Applies ``fast`` to a loaded pipeline; returns the names of the switches applied. A
    switch the model's layout cannot take is logged with the reason and left out."""
    import torch

    applied: list[str] = []
    vae, unet = getattr(pipe, "vae", None), pipe.unet
    # 1. Memory format: the UNet and the VAE.
    if fast.channels_last:
        for module in (unet, vae):
            if module is not None:
                module.to(memory_format=torch.channels_last)
        applied.append("channels_last")
    # 2. Fused projections (the VAE's too when it is an AutoencoderKL).
    if fast.fuse_qkv:
        from diffusers import AutoencoderKL

        try:
            pipe.fuse_qkv_projections(unet=True, vae=isinstance(vae, AutoencoderKL))
            applied.append("fuse_qkv")
        except ValueError as error:  # added KV projections (some IP-adapter layouts)
            log.warning("fast path: fuse_qkv not applied: %s", error)
    # 3. The VAE's decode, for big sizes and big batches.
    if fast.vae_slicing and vae is not None:
        vae.enable_slicing()
        applied.append("vae_slicing")
    if fast.vae_tiling and vae is not None:
        vae.enable_tiling()
        applied.append("vae_tiling")
    # 4. The UNet's forward: compiled, and/or DeepCache's reuse.
    if fast.compile or fast.deepcache_interval:
        from generation.deepcache import unsupported
        from generation.fast_unet import FastUNet

        interval = fast.deepcache_interval
        if interval and (reason := unsupported(unet)):
            log.warning("fast path: deepcache not applied: %s", reason)
            interval = 0
        if interval or fast.compile:
            backend = "inductor" if fast.compile else None
            FastUNet.install(unet, interval=interval, compile_backend=backend)
            applied += ["compile"] if fast.compile else []
            applied += [f"deepcache:{interval}"] if interval else []
    if applied:
        log.info("fast path on %s: %s", device, ", ".join(applied))
    return tuple(applied)


def fused_attention(pipe: Any, fused: bool) -> bool:
    """Runs the UNet's attention on its fused projections (``fused``) or on the separate ones.

    The fused projections are copies of the base weights made at load; LoRA adapters (PEFT)
    wrap the separate ones. So a batch with active LoRAs must run the separate projections,
    and one without may run the fused ones: switching is a swap of attention processors, no
    weights move. Returns whether the pipeline's UNet was fused at all (else nothing to do)."""
    unet = pipe.unet
    if not getattr(pipe, "fusing_unet", False) or unet.original_attn_processors is None:
        return False
    if getattr(unet, "_sdbot_fused", True) != fused:
        from diffusers.models.attention_processor import FusedAttnProcessor2_0

        processors = FusedAttnProcessor2_0() if fused else unet.original_attn_processors
        unet.set_attn_processor(processors)
        unet._sdbot_fused = fused
    return True


def padded_size(count: int, sizes: Sequence[int]) -> int:
    """The smallest of ``sizes`` that holds ``count`` images; beyond them all (a queue set to
    batch more images), the next multiple of the largest, so big batches share graphs too."""
    if not sizes:
        return count
    largest = max(sizes)
    if count > largest:
        return -(-count // largest) * largest
    return min(size for size in sizes if size >= count)


def call_pipeline(
    pipe: Any, seeds: Sequence[int], pad_sizes: Sequence[int] = (), **kwargs: Any
) -> list[Any]:
    """``pipe``'s images for ``seeds`` (one generator each, so an image depends on its seed and
    inputs, not on its batch), as numpy arrays. With ``pad_sizes`` (compiled UNets), the
    batch is padded up to one of them with images of seed ``PAD_SEED`` that repeat the last
    one's inputs, and their outputs are dropped. A DeepCache starts afresh for the call."""
    import torch

    from generation.fast_unet import FastUNet

    count = len(seeds)
    extra = padded_size(count, pad_sizes) - count
    if extra:
        kwargs = {key: _pad(value, count, extra) for key, value in kwargs.items()}
        seeds = [*seeds, *[PAD_SEED] * extra]
    if (fast := FastUNet.of(pipe.unet)) is not None:
        fast.begin()
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    output = pipe(**kwargs, generator=generators, output_type="np")
    return list(output.images[:count])


def _pad(value: Any, count: int, extra: int) -> Any:
    """A per-image input (a tensor or list of ``count`` rows) with its last row repeated."""
    import torch

    if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == count:
        return torch.cat([value, value[-1:].expand(extra, *value.shape[1:])])
    if isinstance(value, list) and len(value) == count:
        return value + [value[-1]] * extra
    return value
