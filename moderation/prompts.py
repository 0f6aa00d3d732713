"""Prompt rules: normalise, take out allowed phrases, then match block terms as whole words.

Every decision carries its reasons, so the audit log and the user both see why.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"))
_NON_WORD = re.compile(r"[^\w]+")

# Sexual content involving minors is refused whatever a guild configures.
MINOR_TERMS = frozenset(
    {
        "child", "children", "kid", "kids", "minor", "minors", "underage", "teen", "teens",
        "teenager", "teenagers", "toddler", "infant", "baby", "preteen", "schoolgirl",
        "schoolboy", "loli", "shota", "young girl", "young boy", "little girl", "little boy",
    }
)  # fmt: skip
SEXUAL_TERMS = frozenset(
    {
        "nude", "naked", "nudity", "sex", "sexual", "sexy", "erotic", "porn", "lingerie",
        "topless", "undressed", "seductive", "bikini", "underwear", "nsfw", "hentai", "fetish",
    }
)  # fmt: skip


def normalise(text: str) -> str:
    """NFKC, casefold, zero-width characters removed, punctuation to single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).casefold()
    return " ".join(_NON_WORD.sub(" ", text).replace("_", " ").split())


def _load_terms(name: str) -> tuple[str, ...]:
    text = resources.files("moderation").joinpath("data", name).read_text(encoding="utf-8")
    terms = (normalise(line) for line in text.splitlines() if not line.startswith("#"))
    return tuple(term for term in terms if term)


@dataclass(frozen=True)
class PromptRules:
    """The terms in force for one request: the shipped lists plus the guild's own."""

    block_terms: tuple[str, ...]
    allow_terms: tuple[str, ...]

    @classmethod
    def default(cls) -> PromptRules:
        return cls(_load_terms("block_terms.txt"), _load_terms("allow_terms.txt"))

    def with_terms(self, block: Iterable[str] = (), allow: Iterable[str] = ()) -> PromptRules:
        return PromptRules(
            self.block_terms + tuple(t for t in map(normalise, block) if t),
            self.allow_terms + tuple(t for t in map(normalise, allow) if t),
        )


@dataclass(frozen=True)
class PromptVerdict:
    allowed: bool
    reasons: tuple[str, ...]

    def summary(self) -> str:
        return "allowed" if self.allowed else "blocked: " + "; ".join(self.reasons)


def _contains(padded_text: str, term: str) -> bool:
    return any(f" {form} " in padded_text for form in (term, term + "s", term + "es"))


def check_prompt(prompt: str, rules: PromptRules) -> PromptVerdict:
    """The verdict on a positive prompt. Negative prompts are not checked: "nsfw" belongs there."""
    text = f" {normalise(prompt)} "
    reasons: list[str] = []
    # Checked before any allow phrase is taken out: no guild term can switch this rule off.
    if any(_contains(text, t) for t in MINOR_TERMS) and any(
        _contains(text, t) for t in SEXUAL_TERMS
    ):
        reasons.append("sexual content involving minors is never allowed")
    for phrase in sorted(rules.allow_terms, key=len, reverse=True):
        text = text.replace(f" {phrase} ", " ")
    matched = sorted({term for term in rules.block_terms if _contains(text, term)})
    reasons.extend(f"contains the blocked term {term!r}" for term in matched)
    return PromptVerdict(allowed=not reasons, reasons=tuple(reasons))
