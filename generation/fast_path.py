"""The fast path on a device: switches applied to a loaded pipeline, each one measured by
``sdbot bench gpu`` (skeleton: the switches are defined, applying them is another change).

Light to import: the bot process reads :class:`FastPath` from the settings; only the worker
applies it (:func:`apply_fast_path`), after the model loads and before its first call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
        interval); raises ValueError naming an unknown switch and the known ones."""
        switches: dict[str, object] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, _, value = item.partition(":")
            if name == "deepcache":
                switches["deepcache_interval"] = int(value or 3)
            elif name in {"channels_last", "fuse_qkv", "compile", "vae_slicing", "vae_tiling"}:
                switches[name] = True
            else:
                raise ValueError(
                    f"unknown fast-path switch {name!r}; known: channels_last, fuse_qkv, "
                    "compile, vae_slicing, vae_tiling, deepcache:N"
                )
        return cls(**switches)  # type: ignore[arg-type]


def apply_fast_path(pipe: Any, fast: FastPath, device: str) -> tuple[str, ...]:
    """Applies ``fast`` to a loaded pipeline; returns the names of the switches applied."""
    return ()
