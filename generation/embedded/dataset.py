"""The training set: rendered scenes with a few captions each, held-out prompts excluded."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from transformers import CLIPTokenizer

from generation.embedded.prompts import held_out_prompts, normalise_prompt
from generation.embedded.scenes import Scene, caption_scene, render_scene, sample_scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneDataset:
    images: torch.Tensor  # (N, 3, 64, 64) uint8
    captions: tuple[tuple[str, ...], ...]  # N tuples of `captions_per_scene` captions


def _caption(scene: Scene, rng: np.random.Generator, held_out: frozenset[str]) -> str:
    for _ in range(50):
        caption = caption_scene(scene, rng)
        if normalise_prompt(caption) not in held_out:
            return caption
    raise RuntimeError(f"every phrasing of {scene} is a held-out benchmark prompt")


def build_dataset(size: int, captions_per_scene: int, seed: int) -> SceneDataset:
    """Render `size` random scenes; the same seed gives the same data."""
    if size < 1 or captions_per_scene < 1:
        raise ValueError(f"need size >= 1 and captions >= 1, got {size}, {captions_per_scene}")
    rng = np.random.default_rng(seed)
    held_out = held_out_prompts()
    images = np.empty((size, 64, 64, 3), dtype=np.uint8)
    captions = []
    for i in range(size):
        scene = sample_scene(rng)
        images[i] = render_scene(scene, rng)
        captions.append(tuple(_caption(scene, rng, held_out) for _ in range(captions_per_scene)))
    log.info("dataset ◆ %d scenes ◆ %d captions each", size, captions_per_scene)
    return SceneDataset(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), tuple(captions))


def tokenize_captions(tokenizer: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    """Token ids exactly as the Stable Diffusion pipeline makes them (max-length padding)."""
    ids = tokenizer(
        captions,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    assert isinstance(ids, torch.Tensor)
    return ids
