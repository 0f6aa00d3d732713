"""The image policy table: what is shown, spoilered or withheld, by guild and channel."""

from __future__ import annotations

import pytest

from common.errors import ErrorKind
from moderation.errors import InvalidThreshold, ModerationError
from moderation.policy import Disposition, ImagePolicy, NsfwPolicy, decide, decide_grid
from moderation.safety import SafetyResult

SAFE = SafetyResult(nsfw_score=0.1)
BORDERLINE = SafetyResult(nsfw_score=0.4)  # over the strict threshold, under the normal one
FLAGGED = SafetyResult(nsfw_score=0.9)
MODEL_FLAGGED = SafetyResult(nsfw_score=0.1, model_flagged=True)


def policy(**overrides: object) -> ImagePolicy:
    values: dict[str, object] = {"threshold": 0.5, "strict_threshold": 0.3}
    return ImagePolicy.for_request(**(values | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "channel_nsfw", "nsfw_policy", "force_safe", "expected"),
    [
        (FLAGGED, False, NsfwPolicy.SPOILER, False, Disposition.WITHHELD),
        (FLAGGED, True, NsfwPolicy.BLOCK, False, Disposition.WITHHELD),
        (FLAGGED, True, NsfwPolicy.SPOILER, False, Disposition.SPOILER),
        (MODEL_FLAGGED, False, NsfwPolicy.BLOCK, False, Disposition.WITHHELD),
        (MODEL_FLAGGED, True, NsfwPolicy.SPOILER, False, Disposition.SPOILER),
        (SAFE, False, NsfwPolicy.BLOCK, False, Disposition.SHOWN),
        (SAFE, True, NsfwPolicy.SPOILER, False, Disposition.SHOWN),
        (SAFE, False, NsfwPolicy.BLOCK, True, Disposition.SPOILER),  # force safe: never plain
        (BORDERLINE, False, NsfwPolicy.BLOCK, False, Disposition.SHOWN),
        (BORDERLINE, False, NsfwPolicy.BLOCK, True, Disposition.WITHHELD),  # strict threshold
        (BORDERLINE, True, NsfwPolicy.SPOILER, True, Disposition.SPOILER),
    ],
)
def test_policy_table(
    result: SafetyResult,
    channel_nsfw: bool,
    nsfw_policy: NsfwPolicy,
    force_safe: bool,
    expected: Disposition,
) -> None:
    decision = decide(
        result, policy(channel_nsfw=channel_nsfw, nsfw_policy=nsfw_policy, force_safe=force_safe)
    )
    assert decision.disposition is expected
    assert decision.flagged == (
        expected is not Disposition.SHOWN and not (force_safe and result is SAFE)
    )


def test_reasons_say_why() -> None:
    assert decide(FLAGGED, policy()).reason == ("NSFW score 0.90; the channel is not marked NSFW")
    assert decide(FLAGGED, policy(channel_nsfw=True)).reason == (
        "NSFW score 0.90; this server never posts flagged images"
    )
    assert decide(MODEL_FLAGGED, policy()).reason.startswith("flagged by the model's checker")
    assert decide(SAFE, policy(force_safe=True)).reason == "force-safe prompt"


def test_a_guild_can_only_be_stricter() -> None:
    assert policy(guild_threshold=0.2).threshold == 0.2
    assert policy(guild_threshold=0.2).strict_threshold == 0.2  # never laxer than the normal one
    assert policy(guild_threshold=0.9).threshold == 0.5
    assert decide(BORDERLINE, policy(guild_threshold=0.35)).disposition is Disposition.WITHHELD


def test_thresholds_are_checked() -> None:
    with pytest.raises(InvalidThreshold, match=r"^threshold must be in \(0, 1\], got 0$"):
        ImagePolicy(threshold=0, strict_threshold=0.3)
    # A guild's threshold stored by hand as 0 reaches a member as bad input, not as a bug.
    with pytest.raises(InvalidThreshold, match=r"threshold must be in \(0, 1\], got 0\.0") as error:
        policy(guild_threshold=0.0)
    assert isinstance(error.value, ModerationError)
    assert error.value.kind is ErrorKind.BAD_INPUT


def test_a_grid_counts_only_the_tiles_it_shows() -> None:
    spoiler = policy(channel_nsfw=True, nsfw_policy=NsfwPolicy.SPOILER)
    tiles = [(result, decide(result, spoiler)) for result in (SAFE, FLAGGED, MODEL_FLAGGED)]
    safety, decision = decide_grid(tiles, spoiler)
    assert safety == SafetyResult(0.9, True)
    assert decision.disposition is Disposition.SPOILER  # spoilered when any tile it shows is
    assert decision.flagged
    assert decision.reason == "NSFW score 0.90"  # the first spoilered tile's
    assert decision.threshold == 0.5

    # Elsewhere the flagged tiles are withheld (grey in the grid): they count for nothing.
    tiles = [(result, decide(result, policy())) for result in (SAFE, FLAGGED, MODEL_FLAGGED)]
    safety, decision = decide_grid(tiles, policy())
    assert safety == SafetyResult(0.1, None)
    assert (decision.disposition, decision.flagged, decision.reason) == (
        Disposition.SHOWN,
        False,
        "",
    )

    # A grid is never withheld, even when every tile is.
    safety, decision = decide_grid([(FLAGGED, decide(FLAGGED, policy()))], policy())
    assert (safety, decision.disposition) == (SafetyResult(0.0, None), Disposition.SHOWN)

    # Force-safe: every tile spoilered, and so is the grid, at the strict threshold.
    strict = policy(force_safe=True)
    _, decision = decide_grid([(SAFE, decide(SAFE, strict))], strict)
    assert (decision.disposition, decision.reason, decision.threshold) == (
        Disposition.SPOILER,
        "force-safe prompt",
        0.3,
    )


def test_the_policy_module_stays_light_to_import() -> None:
    """storage imports its enums and the bot process its decisions: no numpy behind them."""
    import subprocess
    import sys

    code = "import sys, moderation.policy; print('numpy' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
