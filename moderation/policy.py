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

The worker applies these rules (the request carries the policy the bot fixed at admission), so
what comes back from it is ready to post. A job's grid is never withheld: withheld tiles are
grey in it, and it is spoilered when any tile it shows is (``decide_grid``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from moderation.errors import InvalidThreshold
from moderation.reasons import GORE_EVERYWHERE, GORE_OUTSIDE_AGE_RESTRICTED
from moderation.safety import SafetyResult  # free of numpy at import: storage imports our enums

if TYPE_CHECKING:
    from moderation.prompts import PromptVerdict


class NsfwPolicy(enum.StrEnum):
    """What a guild does with a flagged image in a channel marked NSFW (elsewhere: withheld)."""

    BLOCK = "block"
    SPOILER = "spoiler"


class GorePolicy(enum.StrEnum):
    """Where a guild lets gore prompts through: only in age-restricted channels (spoilered), or
    nowhere."""

    AGE_RESTRICTED = "age_restricted"
    BLOCK = "block"


def apply_gore_policy(
    verdict: PromptVerdict, policy: GorePolicy, channel_nsfw: bool
) -> PromptVerdict:
    """The verdict once the guild's gore policy has read its gore reasons: refused outside
    age-restricted channels (everywhere under ``block``), made and spoilered inside them."""
    if not verdict.gore or not verdict.allowed:
        return verdict
    refused = recheck_gore_policy(verdict, policy, channel_nsfw)
    if not refused.allowed:
        return refused
    return dataclasses.replace(
        verdict, force_safe=True, safe_reasons=(*verdict.safe_reasons, *verdict.gore)
    )


def recheck_gore_policy(
    verdict: PromptVerdict, policy: GorePolicy, channel_nsfw: bool
) -> PromptVerdict:
    """A verdict the gore policy let through once (force-safe, its gore reasons kept), under
    the policy of now: refused when the policy now refuses gore here, else as it was. A job
    queued again after a restart is judged so, as a control's new job is."""
    if not verdict.gore or not verdict.allowed:
        return verdict
    if policy is GorePolicy.BLOCK or not channel_nsfw:
        why = GORE_EVERYWHERE if policy is GorePolicy.BLOCK else GORE_OUTSIDE_AGE_RESTRICTED
        return dataclasses.replace(verdict, allowed=False, reasons=(*verdict.gore, why))
    return verdict


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
                raise InvalidThreshold(name, value)

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


def decide_grid(
    tiles: Sequence[tuple[SafetyResult, ImageDecision]], policy: ImagePolicy
) -> tuple[SafetyResult, ImageDecision]:
    """The grid's findings and disposition from its tiles' (in variant order).

    Only the tiles it shows count: its score is their highest, it is flagged when one of them
    is, the model flagged it when the model flagged one of them (None when the model has no
    checker), and it takes the first spoilered tile's reason. It is never withheld.
    """
    visible = [(safety, decision) for safety, decision in tiles if not decision.withheld]
    spoilered = [d for _, d in visible if d.disposition is Disposition.SPOILER]
    model_flags = [safety.model_flagged for safety, _ in visible]
    safety = SafetyResult(
        nsfw_score=max((safety.nsfw_score for safety, _ in visible), default=0.0),
        model_flagged=(
            None if all(flag is None for flag in model_flags) else any(map(bool, model_flags))
        ),
    )
    decision = ImageDecision(
        disposition=Disposition.SPOILER if spoilered else Disposition.SHOWN,
        flagged=any(d.flagged for _, d in visible),
        threshold=policy.effective_threshold,
        reason=spoilered[0].reason if spoilered else "",
    )
    return safety, decision
