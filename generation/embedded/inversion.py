"""Build and measure a textual-inversion embedding for the embedded model's text encoder.

    python -m generation.embedded.inversion --out generation/embedded/embeddings/warm.safetensors
                                            [--words red orange yellow]
    python -m generation.embedded.inversion
        --measure generation/embedded/embeddings/warm.safetensors [--seeds N]

The embedding is one vector, built from the text encoder's own input embeddings: the mean of
the embeddings of `--words` (each must be one token of the embedded tokenizer). It is written in
the A1111 safetensors layout (`emb_params`, shape (1, 128)), which both A1111 and diffusers'
`pipe.load_textual_inversion(path, token=...)` read; the token is the file's stem. `--measure`
draws colour-less prompts three ways (plain, the token in the prompt, the token as the negative
prompt) and reports the share of drawn shapes whose colour is one of the words.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from generation.embedded.analyser import analyse
from generation.embedded.folder import load_pipeline
from generation.embedded.lora import generate
from generation.models import EMBEDDED_MODEL_DIR

log = logging.getLogger(__name__)

WARM = ("red", "orange", "yellow")
# Colour-less prompts on backgrounds that are not warm colours themselves.
NEUTRAL_PROMPTS = (
    "a large circle in the centre on a white background",
    "a large square on the left on a blue background",
    "a large triangle at the top on a green background",
    "a small circle at the bottom right on a purple background",
    "a large square in the centre on a black background",
    "a small triangle on the right on a white background",
    "a large circle at the top left on a blue background",
    "a large triangle in the centre on a purple background",
)


def word_embedding(pipe: Any, word: str) -> torch.Tensor:
    """The text encoder's input embedding of `word`, which must be a single token."""
    ids = pipe.tokenizer(word, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise ValueError(f"{word!r} is {len(ids)} tokens in the embedded tokenizer, not one")
    table = pipe.text_encoder.get_input_embeddings().weight
    embedding: torch.Tensor = table[ids[0]].detach().clone()
    return embedding


def build_embedding(pipe: Any, words: Sequence[str]) -> torch.Tensor:
    """One vector: the mean of the words' input embeddings, shape (1, width)."""
    if not words:
        raise ValueError("need at least one word")
    return torch.stack([word_embedding(pipe, word) for word in words]).mean(0, keepdim=True)


def save_embedding(vector: torch.Tensor, out: Path) -> None:
    """A1111's safetensors layout: one tensor `emb_params` of shape (vectors, width)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": vector.float().contiguous()}, str(out))


@dataclass(frozen=True)
class EmbeddingRow:
    how: str
    share: float  # shapes drawn in one of the words' colours
    shapes: int


def colour_share(images: Sequence[np.ndarray], colours: Sequence[str]) -> tuple[float, int]:
    found = [o.colour for image in images for o in analyse(image).objects]
    if not found:
        return 0.0, 0
    return sum(c in colours for c in found) / len(found), len(found)


def with_token(prompt: str, token: str) -> str:
    """'a large circle …' → 'a large <token> circle …' (the token where a colour goes)."""
    for shape in ("circle", "square", "triangle"):
        if f" {shape}" in prompt:
            return prompt.replace(f" {shape}", f" {token} {shape}", 1)
    return f"{token} {prompt}"


def measure(
    pipe: Any, token: str, colours: Sequence[str], seeds: Sequence[int]
) -> list[EmbeddingRow]:
    """Share of shapes in `colours`: plain prompts, token in the prompt, token as negative."""
    prompts = list(NEUTRAL_PROMPTS)
    ways: dict[str, dict[str, Any]] = {
        "plain prompt": {},
        f"'{token}' in the prompt": {"prompts": [with_token(p, token) for p in prompts]},
        f"'{token}' as negative prompt": {"negative_prompt": [token] * len(prompts)},
    }
    rows = []
    for how, change in ways.items():
        images = []
        for seed in seeds:
            kwargs = {k: v for k, v in change.items() if k != "prompts"}
            images += generate(pipe, change.get("prompts", prompts), seed, **kwargs)
        share, shapes = colour_share(images, colours)
        rows.append(EmbeddingRow(how, share, shapes))
    return rows


def run_measure(path: Path, colours: Sequence[str], seeds: int) -> None:
    pipe = load_pipeline(EMBEDDED_MODEL_DIR)
    token = path.stem
    pipe.load_textual_inversion(str(path), token=token)
    print(f"| prompts | shapes drawn {'/'.join(colours)} | shapes |")
    print("|---|---|---|")
    for row in measure(pipe, token, colours, range(seeds)):
        print(f"| {row.how} | {row.share * 100:.1f} % | {row.shapes} |")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(
        prog="python -m generation.embedded.inversion", description=__doc__.split("\n\n")[0]
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", type=Path, help="embedding file to write; token = its stem")
    action.add_argument("--measure", type=Path, help="embedding file to measure")
    parser.add_argument("--words", nargs="+", default=list(WARM))
    parser.add_argument("--seeds", type=int, default=4, help="with --measure: seeds per prompt")
    args = parser.parse_args(argv)
    if args.measure is not None:
        run_measure(args.measure, args.words, args.seeds)
        return 0
    pipe = load_pipeline(EMBEDDED_MODEL_DIR)
    save_embedding(build_embedding(pipe, args.words), args.out)
    log.info("embedding ◆ %s ◆ mean of %s", args.out, ", ".join(args.words))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
