"""What happens to a checked image, by guild and channel: shown, spoilered or withheld.

| image                     | channel not NSFW | NSFW channel, "block" | NSFW channel, "spoiler" |
|---------------------------|------------------|-----------------------|-------------------------|
| flagged                   | withheld         | withheld              | spoiler                 |
| not flagged, force safe   | spoiler          | spoiler               | spoiler                 |
| not flagged               | shown            | shown                 | shown                   |

"Flagged" means open_nsfw's score is at or above the threshold, or the model's own checker
flagged it. The threshold is the global one, or the guild's own when it is stricter (lower); a
force-safe request is held to the strict threshold. A withheld image is replaced by a placeholder
tile that says why; its record and scores are kept.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # storage imports this module's enums; keep it free of numpy
    from moderation.safety import SafetyResult


class NsfwPolicy(enum.StrEnum):
    """What a guild does with a flagged image in a channel marked NSFW (elsewhere: withheld)."""

    BLOCK = "block"
    SPOILER = "spoiler"


class Disposition(enum.StrEnum):
    SHOWN = "shown"
    SPOILER = "spoiler"
    WITHHELD = "withheld"


@dataclass(frozen=True)
class ImagePolicy:
    threshold: float
    strict_threshold: float
    nsfw_policy: NsfwPolicy = NsfwPolicy.BLOCK
    channel_nsfw: bool = False
    force_safe: bool = False

    def __post_init__(self) -> None:
        for name in ("threshold", "strict_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")

    @classmethod
    def for_request(
        cls,
        *,
        threshold: float,
        strict_threshold: float,
        guild_threshold: float | None = None,
        nsfw_policy: NsfwPolicy = NsfwPolicy.BLOCK,
        channel_nsfw: bool = False,
        force_safe: bool = False,
    ) -> ImagePolicy:
        """A guild may only make the threshold stricter, never laxer."""
        if guild_threshold is not None:
            threshold = min(threshold, guild_threshold)
        return cls(
            threshold=threshold,
            strict_threshold=min(strict_threshold, threshold),
            nsfw_policy=nsfw_policy,
            channel_nsfw=channel_nsfw,
            force_safe=force_safe,
        )

    @property
    def effective_threshold(self) -> float:
        return self.strict_threshold if self.force_safe else self.threshold


@dataclass(frozen=True)
class ImageDecision:
    disposition: Disposition
    flagged: bool
    threshold: float
    reason: str  # short: it goes on the placeholder tile and into the log

    @property
    def withheld(self) -> bool:
        return self.disposition is Disposition.WITHHELD


def decide(result: SafetyResult, policy: ImagePolicy) -> ImageDecision:
    threshold = policy.effective_threshold
    flagged = result.flagged(threshold)
    if flagged:
        why = (
            "flagged by the model's checker"
            if result.model_flagged and result.nsfw_score < threshold
            else f"NSFW score {result.nsfw_score:.2f}"
        )
        if policy.channel_nsfw and policy.nsfw_policy is NsfwPolicy.SPOILER:
            return ImageDecision(Disposition.SPOILER, True, threshold, why)
        where = (
            "this server never posts flagged images"
            if policy.channel_nsfw
            else "the channel is not marked NSFW"
        )
        return ImageDecision(Disposition.WITHHELD, True, threshold, f"{why}; {where}")
    if policy.force_safe:
        return ImageDecision(Disposition.SPOILER, False, threshold, "force-safe prompt")
    return ImageDecision(Disposition.SHOWN, False, threshold, "")
