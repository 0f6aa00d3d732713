"""Prompt rules in layers, each with its own reason, decided on the prompt and negative prompt.

1. A hard rule no guild can turn off: words about minors together with sexual words (in the
   prompt, or clothing left out through the negative prompt) are refused.
2. Block terms: the shipped default list, better-profanity's list (less the ordinary words it
   over-blocks), then the guild's own terms and patterns.
3. Force-safe terms: the image is made, checked with the strict threshold and never shown
   unspoilered.
4. Allow terms take benign phrases out before the block terms are matched ("naked mole rat");
   the shipped ones apply everywhere, a guild's only to the guild's own rules and the defaults,
   never to rule 1.
5. The negative prompt is not held to the block lists ("nsfw, nude" there keeps images clean), but
   asking it to leave out clothing in a picture of a person is refused; so is leaving clothing
   out inside the prompt ("woman, no clothes"), and a negative prompt typed into the prompt
   ("--no clothing") is read as the negative prompt it is (``moderation.negation``).
6. Emoji used as sexual slang (``moderation.emoji``), and, where one is shipped, the learned
   classifier (``moderation.learned``): when no list refused the prompt and no guild allow
   entry took words out of it, its sexual reading refuses, explained by its score and cues;
   with a minor named, a lower score is enough for rule 1.
7. Gore (terms of the language files' [gore] sections, the classifier's gore reading) is not
   refused here: the verdict carries why the prompt reads as gore, and the guild's gore policy
   decides (``moderation.policy.apply_gore_policy``).

The languages' words come from ``moderation/data/lang`` (``moderation.vocab``); what the lists
find in the readings is ``moderation.matching``.

Decisions are pure and fast: no torch, no database, no I/O after the lists are loaded. The lists
themselves (what is shipped, how a guild's entries are laid over it) are ``moderation.lists``.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

from moderation import matching
from moderation.backstop import beyond_force_safe, counts, minors_bar, one_word_bar
from moderation.emoji import SEXUAL_ACTS, emoji_reason, find_emoji
from moderation.glued import glued, glued_minor
from moderation.implied import fantasy_only, implied_nudity
from moderation.learned import explain
from moderation.lists import Allowed, Layer, PromptRules, RuleAction
from moderation.masked import unmasked
from moderation.negation import asserted, clothing_left_out, split_typed_negative
from moderation.normalise import Views, folded_only, fragment_joins, views
from moderation.reasons import MINORS_REASON
from moderation.weights import weighed_out

# Generator parameters typed after the prompt ("--ar 16:9", "--seed 42", "--v 6") say nothing
# about the picture's content; the classifier does not read them.
_PARAMETERS = re.compile(r"(?<!\S)--[a-z]+(?:\s+[\d:.x]+)?(?!\S)", re.IGNORECASE)
# Gore said to be absent ("gore-free", "no gore", "without blood") is no cue for the classifier,
# whose features would read the word "gore" alone.
_NO_GORE = re.compile(
    r"\b(?:gore|blood)[ -]?(?:free|less)\b|\b(?:no|without|zero|non)[ -](?:gore|blood)\b",
    re.IGNORECASE,
)
# The guild patterns of one check share this much time; past it they count as matching.
PATTERN_BUDGET_S = 0.05


@dataclass(frozen=True)
class PromptVerdict:
    allowed: bool
    reasons: tuple[str, ...] = ()
    force_safe: bool = False
    safe_reasons: tuple[str, ...] = ()
    # Why the prompt reads as gore. check_prompt does not refuse it: the guild's gore policy and
    # the channel do (``moderation.policy.apply_gore_policy``).
    gore: tuple[str, ...] = ()
    # The learned classifier's scores by label ("sexual", "gore"), for the audit log.
    classifier_scores: tuple[tuple[str, float], ...] = ()

    def summary(self) -> str:
        if not self.allowed:
            return "blocked: " + "; ".join(self.reasons)
        if self.force_safe:
            return "allowed, force safe: " + "; ".join(self.safe_reasons)
        return "allowed"


def clothing_reason(words: str) -> str:
    return f"the prompt leaves out clothing ('{words}') on a person"


NEGATIVE_BESIDE_MINOR = "a minor is named and the negative prompt avoids sexual words"


def gore_reason(term: str) -> str:
    return f"'{term}' reads as gore ({Layer.DEFAULT})"


def check_prompt(
    prompt: str, rules: PromptRules, negative_prompt: str = "", *, split: bool = True
) -> PromptVerdict:
    """The verdict on a request's text; every reason says which layer decided.

    A negative prompt typed into the prompt ("…, negative prompt: nsfw, lowres", "--no text")
    is the negative prompt: admission hands it to the generator as one
    (``typed_negative_apart``), and so the rules read the prompt without it, as it is drawn.
    ``split=False``: the prompt is already as the generator gets it (admission split it),
    read whole, so that the rules never read less than is drawn."""
    prompt = unmasked(prompt)  # "c*m", "f**king": starred-out sexual words read whole
    if split:
        prompt, negative_prompt = typed_negative_apart(prompt, negative_prompt, rules)
    positive = views(prompt)
    negative = views(negative_prompt) if negative_prompt.strip() else Views("", ())
    clothing, any_clothing = matching.clothing_in_negative(rules, negative)
    left_out = clothing_left_out(rules, prompt, positive.all)
    emoji = find_emoji(prompt, rules.emoji)
    learned = None
    if rules.classifier is not None:
        learned = rules.classifier.read(_NO_GORE.sub(" ", _PARAMETERS.sub(" ", prompt)))
    deadline = time.monotonic() + PATTERN_BUDGET_S
    reasons: list[str] = []
    person = matching.names_a_person(rules, positive.all)
    # For the minors rule only the [beside_minors] phrases are out ("a kid feeding a naked mole
    # rat", Swahili "mtoto wa kike", a girl child); not a guild's allow entries, nor phrases
    # like "nude heels" or names like "great tit".
    beside_minors = tuple(rules.minors_allow.remove_from(reading) for reading in positive.all)
    sexual = matching.sexual(rules, Views(beside_minors[0], beside_minors))
    # Sexual words glued into a long token, nudity the scene implies (``moderation.implied``).
    unlisted = glued(positive.all) or implied_nudity(positive.plain, person=person)

    weighed = weighed_out(prompt)  # "(clothes:0)": clothing weighed to nothing

    # 1. Minors: before any guild's allow entry is taken out, so that no guild can switch it
    # off (only the names above are out).
    minor_named = bool(
        matching.minor(rules, positive, prompt) or emoji.minors or glued_minor(positive.all)
    )
    if minor_named:
        if (
            any_clothing
            or left_out
            or weighed
            or sexual
            or unlisted
            or emoji.strong
            or emoji.weak  # beside a child, any not read in its ordinary sense ("kids eating 🍑")
            or any(one.strong for one in emoji.in_context)
        ):
            reasons.append(MINORS_REASON)
        elif (cues := counts(rules, learned, minors_bar(rules), prompt=positive.plain)) is not None:
            score = learned.scores["sexual"] if learned is not None else 0.0
            reasons.append(f"{MINORS_REASON} (the classifier: {score:.2f}: {', '.join(cues)})")

    # 4. Allowed phrases out: the shipped ones (some not when the prompt names a person), then
    # the guild's own.
    shipped_allowed = tuple(
        rules.allow.remove_from(reading, unless=functools.partial(_kept, reading, person))
        for reading in positive.all
    )
    readings = tuple(rules.guild_allow.remove_from(reading) for reading in shipped_allowed)
    # What the shipped allow phrases and names took out, the classifier does not read either
    # ("grain elevators in Sexsmith, Alberta" read 0.85 through the town's name; "Al Gore giving
    # a speech" is no gore).
    if rules.classifier is not None and shipped_allowed[0] != positive.plain:
        rest = " ".join(word for word in shipped_allowed[0].split() if word != "_")
        learned = rules.classifier.read(_NO_GORE.sub(" ", rest))

    # 2. Block terms and patterns, emoji, clothing left out, the classifier.
    for term, listed in matching.found(
        rules.block, readings, unless=rules.shipped_force_safe
    ).items():
        reasons.append(f"'{term}' is not allowed ({listed.layer})")
    joined = {join for reading in readings[:2] for join in fragment_joins(reading)}
    for term in sorted(joined & rules.fragment_terms):
        if not any(f"'{term}'" in reason for reason in reasons):
            reasons.append(f"'{term}' is not allowed ({Layer.DEFAULT})")
    # Words the lists cannot hold one by one: glued into a long token, or a scene that leaves
    # the person naked ("wearing only his hat and boots").
    for words in (glued(readings), implied_nudity(readings[0], person=person)) if unlisted else ():
        if words is not None and not any(f"'{words}'" in reason for reason in reasons):
            reasons.append(f"'{words}' is not allowed ({Layer.DEFAULT})")
    for written in matching.pattern_hits(rules.patterns, readings, RuleAction.BLOCK, deadline):
        reasons.append(f"matches the pattern '{written}' ({Layer.GUILD})")
    if emoji:  # a weak emoji with a word for a person: a child alone is no sexual cue
        grown = matching.names_a_person(rules, positive.all, minors=False)
        acted = SEXUAL_ACTS.search(positive.plain) is not None
        reasons += [
            emoji_reason(one) for one in emoji.sexual(person=grown, other_cue=sexual or acted)
        ]
    if left_out and person:
        reasons.append(clothing_reason(left_out))
    if weighed and (person or minor_named):
        reasons.append(clothing_reason(weighed))
    # The classifier is the backstop for what the lists miss; where the guild's own allow list
    # took words out ("nude" on an art server), the guild has decided and it stays out.
    if (
        not reasons
        and learned is not None
        and learned.over("sexual")
        and (
            shown := counts(
                rules,
                learned,
                one_word_bar(positive.plain),
                person=person,
                prompt=shipped_allowed[0],
            )
        )
        is not None
        and readings == shipped_allowed
        and beyond_force_safe(rules, learned, shown, readings[0])
    ):
        # A force-safe word weighing most ("a sexy red circle") is the force-safe list's to
        # decide: made, checked strictly, spoilered.
        reasons.append(explain("sexual", learned, shown))

    # 6. The negative prompt leaving out clothing in a picture of a person.
    if clothing and person:
        reasons.append(
            f"the negative prompt leaves out clothing ({clothing}) in a picture of a person"
        )
    # Gore: an English word matched only through another language's accented word ("góry",
    # Polish mountains) is that word; killing a dragon without graphic detail is fantasy.
    # A guild's allow entry takes nothing out of gore: only the shipped allow names do.
    gore_terms = [
        term
        for term in asserted(rules, rules.gore, shipped_allowed)
        if not (term in rules.gore_english and folded_only(term, prompt))
    ]
    clauses = prompt.casefold()
    gore = [] if fantasy_only(clauses, gore_terms) else [gore_reason(t) for t in gore_terms]
    if (
        learned is not None
        and learned.over("gore")
        and learned.scores["gore"] >= one_word_bar(positive.plain, words=2)
        and not (
            (cues := learned.cues.get("gore", ()))
            and fantasy_only(clauses, gore_terms, cue=cues[0])
        )
    ):
        gore.append(explain("gore", learned))
    scores = tuple(sorted(learned.scores.items())) if learned is not None else ()
    if reasons:
        return PromptVerdict(
            allowed=False, reasons=tuple(reasons), gore=tuple(gore), classifier_scores=scores
        )

    # 5. Force safe: made, checked strictly, never shown unspoilered.
    safe_reasons = [
        f"'{term}' is on the force-safe list ({listed.layer})"
        for term, listed in matching.found(rules.force_safe, readings).items()
    ]
    safe_reasons += [
        f"matches the force-safe pattern '{written}' ({Layer.GUILD})"
        for written in matching.pattern_hits(
            rules.patterns, readings, RuleAction.FORCE_SAFE, deadline
        )
    ]
    if clothing:
        safe_reasons.append(f"the negative prompt leaves out clothing ({clothing})")
    # Sexual words avoided beside a minor ("a child, negative prompt: nsfw") are no sexual cue,
    # but the pictures are checked strictly.
    if minor_named and negative.all and matching.sexual(rules, negative):
        safe_reasons.append(NEGATIVE_BESIDE_MINOR)
    if left_out:
        safe_reasons.append(f"the prompt leaves out clothing ('{left_out}')")
    return PromptVerdict(
        allowed=True,
        force_safe=bool(safe_reasons),
        safe_reasons=tuple(safe_reasons),
        gore=tuple(gore),
        classifier_scores=scores,
    )


def _kept(reading: str, person: bool, why: Allowed) -> bool:
    """A shipped allow phrase stays in ``reading`` for the lists (``Allowed.kept``)."""
    return why.kept(reading, person=person)


def typed_negative_apart(prompt: str, negative_prompt: str, rules: PromptRules) -> tuple[str, str]:
    """(the prompt, the negative prompt) with a negative prompt typed into the prompt moved to
    the negative prompt, as the member meant it: "a portrait, negative prompt: nsfw, lowres" is
    drawn as "a portrait" avoiding "nsfw, lowres"; unchanged when none is typed.

    Split again until no typed negative is left: joining what surrounds one may make another
    ("negative prompt --no x | : topless" leaves "negative prompt : topless"), and the
    generator must get nothing the rules would read as a negative prompt. Each round takes a
    marker out, so it ends."""
    while True:
        split, typed = split_typed_negative(prompt, rules.negative_markers)
        if not typed.strip():
            return prompt, negative_prompt
        prompt = " ".join(split.split()).strip(" ,;|")
        negative_prompt = ", ".join(
            part.strip() for part in (negative_prompt, typed) if part.strip()
        )
