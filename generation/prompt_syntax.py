"""Prompt syntax shared by the front ends and the worker (no torch): A1111 attention weights,
``<lora:NAME:WEIGHT>`` tags, and the text the rules should read.

SKELETON (issue 17): signatures fixed by the plan; bodies are filled by their owner.
"""

from __future__ import annotations

from dataclasses import dataclass

from generation.options import LoraChoice


@dataclass(frozen=True)
class Segment:
    text: str
    weight: float = 1.0


def parse_weights(prompt: str) -> list[Segment]:
    """A1111 syntax: ``(a)`` ×1.1, ``((a))`` ×1.21, ``[a]`` ÷1.1, ``(a:1.3)``, ``\\(`` escapes,
    ``BREAK`` a chunk boundary (a Segment with text "BREAK" and weight -1). Unbalanced
    brackets are read as A1111 reads them (never an error). Adjacent equal weights merge."""
    raise NotImplementedError


def plain_text(prompt: str) -> str:
    """The prompt as its words, without weights, brackets, escapes or lora tags: what the
    moderation rules read beside the raw prompt."""
    raise NotImplementedError


def take_lora_tags(prompt: str) -> tuple[str, tuple[LoraChoice, ...]]:
    """``<lora:NAME>`` / ``<lora:NAME:WEIGHT>`` tags taken out of the prompt; InvalidOption for
    a malformed tag (names it)."""
    raise NotImplementedError


def parse_lora_list(text: str) -> tuple[LoraChoice, ...]:
    """``"outline:0.8, stripes"`` (Discord's lora option, the CLI's repeated --lora joined):
    InvalidOption names the bad entry."""
    raise NotImplementedError
