"""A blocked prompt's reasons as bounded labels: which rule decided and in which layer.

``check_prompt`` (``moderation.prompts``) says why in words a member reads, each reason naming
its layer in parentheses; the metrics (``PROMPT_BLOCKS``) need the rule and the layer from a
small fixed set. This reads them back from those words, and sits beside the module that writes
them: ``tests/test_metrics_jobs.py`` checks it on reasons ``check_prompt`` really gives, so a
change of wording there breaks a test, not the counts.
"""

from __future__ import annotations

import re

from moderation.lists import Layer

RULES = (
    "minors", "term", "pattern", "negative_clothing", "clothing_removed", "classifier", "gore",
    "other",
)  # fmt: skip
LAYERS = ("default", "profanity", "guild", "always")

# The reasons as ``check_prompt`` writes them (the quoted text may hold any character).
MINORS_REASON = "sexual content involving minors is never allowed"
# The gore policy's last word, after the reasons the prompt reads as gore.
GORE_OUTSIDE_AGE_RESTRICTED = "gore is refused outside age-restricted channels"
GORE_EVERYWHERE = "this server refuses gore everywhere"
# (A reason recorded before the typed negative prompt became the negative prompt may say so
# after the layer: "default list; typed as a negative prompt, ...".)
_TERM = re.compile(r"'.*' is not allowed \((?P<layer>[^();]+)(?:; [^()]*)?\)", re.DOTALL)
_PATTERN = re.compile(r"matches the pattern '.*' \((?P<layer>[^()]+)\)", re.DOTALL)
_NEGATIVE_CLOTHING = re.compile(
    r"the negative prompt leaves out clothing \(.*\) in a picture of a person", re.DOTALL
)
_CLOTHING_REMOVED = re.compile(r"the prompt leaves out clothing \('.*'\) on a person", re.DOTALL)
_GORE_TERM = re.compile(r"'.*' reads as gore \((?P<layer>[^()]+)\)", re.DOTALL)
_CLASSIFIER = re.compile(r"the classifier reads it as (?P<label>\w+) \(.*\)", re.DOTALL)
_LAYERS = {
    Layer.DEFAULT.value: "default",
    Layer.PROFANITY.value: "profanity",
    Layer.GUILD.value: "guild",
}


def reason_labels(reason: str) -> tuple[str, str]:
    """(rule, layer) for one reason of a blocked prompt; a reason in words this does not know
    is ("other", "default"), counted rather than dropped. The minors rule is no list's: its
    layer is "always"; the clothing rules are the shipped lists' ("default"); gore (a term, the
    classifier's reading, the policy's last word) is its own rule, "guild" where the guild's
    policy refuses it everywhere."""
    if reason == MINORS_REASON or reason.startswith(f"{MINORS_REASON} (the classifier: "):
        return "minors", "always"
    for rule, shape in (("term", _TERM), ("pattern", _PATTERN)):
        found = shape.fullmatch(reason)
        if found is not None:
            return rule, _LAYERS.get(found["layer"], "default")
    if _NEGATIVE_CLOTHING.fullmatch(reason):
        return "negative_clothing", "default"
    if _CLOTHING_REMOVED.fullmatch(reason):
        return "clothing_removed", "default"
    if reason == GORE_EVERYWHERE:
        return "gore", "guild"
    if reason == GORE_OUTSIDE_AGE_RESTRICTED:
        return "gore", "default"
    if (found := _GORE_TERM.fullmatch(reason)) is not None:
        return "gore", _LAYERS.get(found["layer"], "default")
    if (found := _CLASSIFIER.fullmatch(reason)) is not None:
        return ("gore" if found["label"] == "gore" else "classifier"), "default"
    return "other", "default"
