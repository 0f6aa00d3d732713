"""Text to the UNet's conditioning, our way (imported by the worker only: torch): A1111 weights
applied to the token embeddings, prompts longer than the text encoder's window encoded in
chunks and concatenated instead of cut, SDXL's two encoders and pooled embeds.

A plain prompt that fits one window gives exactly diffusers' own ``encode_prompt`` tensors, so
its pixels are the pipeline's.

SKELETON (issue 17): signatures fixed by the plan; bodies are filled by their owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_CHUNKS = 8  # windows per prompt (8 × 75 tokens for SD): beyond it the prompt is cut


@dataclass
class Conditioning:
    prompt_embeds: Any  # torch.Tensor [batch, 77·chunks, dim]
    negative_prompt_embeds: Any
    pooled_prompt_embeds: Any = None  # SDXL only
    negative_pooled_prompt_embeds: Any = None
    cut: tuple[int, ...] = ()  # per prompt: tokens dropped beyond MAX_CHUNKS (0: none)

    def pipeline_kwargs(self) -> dict[str, Any]:
        """What the diffusers pipeline call takes instead of prompt/negative_prompt."""
        raise NotImplementedError


def encode(pipe: Any, prompts: Sequence[str], negatives: Sequence[str]) -> Conditioning:
    """Encodes a batch's prompts and negatives (same length) with the pipeline's tokenizer(s)
    and text encoder(s); textual-inversion tokens loaded into the pipeline are expanded as
    diffusers does (``maybe_convert_prompt``)."""
    raise NotImplementedError
