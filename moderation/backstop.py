"""When the classifier's reading counts: the bars and the checks ``check_prompt`` holds it to.

The classifier is the backstop for what the lists miss, and it reads words, not meaning: "a
woman" alone scored 0.98 once, "nothing but sand dunes" 0.98, "a sexy red circle" leans on the
force-safe list's word. Its sexual reading counts only where the words that weighed most carry
more than words for people, ages, style and framing (``moderation.learned.carried``), where a
person weighed most and the rest still reads sexual, where the words of "nothing but" are said
of a person or of something worn, and where a force-safe word weighed most only if the rest
reads sexual without it.
"""

from __future__ import annotations

import functools

from moderation.implied import worn
from moderation.learned import Reading, carried, plain_word
from moderation.lists import PromptRules

# A word or two is little to go on: the classifier read "another" as sexual (0.88) and "glow
# red" as gore (0.79). With so few distinct words the lists do not hold, it counts only at this
# score (one word for its sexual reading, two for gore).
FEW_WORDS_BAR = 0.97


def one_word_bar(plain: str, words: int = 1) -> float:
    return FEW_WORDS_BAR if len(set(plain.split())) <= words else 0.0


# "Nothing but", "only", "just": said of a person the idiom of being bare ("wearing nothing but
# a smile"); of a place, nothing of the kind.
EXCLUSIVE = frozenset({"nothing", "but", "only", "just", "except", "else", "naught"})


def minors_bar(rules: PromptRules) -> float:
    """The sexual score that refuses when a minor is named (lower than the plain bar); with no
    classifier, a bar no score reaches."""
    if rules.classifier is None:
        return float("inf")
    return rules.classifier.thresholds.get("minors", rules.classifier.thresholds["sexual"])


def counts(
    rules: PromptRules,
    learned: Reading | None,
    bar: float,
    *,
    person: bool = True,
    prompt: str = "",
) -> tuple[str, ...] | None:
    """The cues shown when the classifier's sexual reading counts, or None: its score reaches
    ``bar`` and its top cue carries something beyond words for people or minors, ages, numbers,
    stopwords and style tags ("a woman" 0.98 on 'woman' alone counts for nothing); where no
    person is named, beyond the words of "nothing but", "only" too ("nothing but sand dunes")."""
    if learned is None or learned.scores.get("sexual", 0.0) < bar:
        return None
    cues = learned.cues.get("sexual", ())
    shown = carried(learned, "sexual", lambda word: person_word(rules, word))
    # "nothing but sand dunes": with no person and nothing worn named, the words of the idiom
    # weighing most count only if the prompt still reads sexual without them (not "stockings
    # and nothing else", not "booty pic, nothing on").
    if (
        not person
        and cues
        and all(word in EXCLUSIVE for word in cues[0].split())
        and not worn(prompt)
        and not (prompt and rules.clothing.find(prompt))
    ):
        rest = " ".join(word for word in prompt.split() if word not in EXCLUSIVE | {"_"})
        if rules.classifier is None or rules.classifier.read(rest).scores.get("sexual", 0.0) < max(
            bar, plain_bar(rules), one_word_bar(rest)
        ):
            return None
    # The top cue carries, or two of the top three do: "woman, show, her" is not enough; or,
    # where one of them carries, it reads so on its own or the prompt does without its plain
    # words ("undress the woman in this photo" weighs 'woman' most; "undress" alone reads 0.99
    # all the same).
    if not shown:
        return None
    if cues[0] not in shown and len(shown) < 2:
        if rules.classifier is None or not prompt:
            return None
        is_person = functools.partial(person_word, rules)
        alone = " ".join(dict.fromkeys(word for cue in shown for word in cue.split()))
        rest = " ".join(
            word for word in prompt.split() if word != "_" and not plain_word(word, is_person)
        )
        if not any(
            rules.classifier.read(text).scores.get("sexual", 0.0)
            >= max(bar, plain_bar(rules), one_word_bar(text))
            for text in (alone, rest)
        ):
            return None
    return shown[:3]


def beyond_force_safe(
    rules: PromptRules, learned: Reading, shown: tuple[str, ...], plain: str
) -> bool:
    """Whether the classifier's sexual reading stands once the force-safe words are out: where
    one weighs most ("a sexy red circle") the force-safe list decides (made, checked strictly,
    spoilered) unless the rest still reads sexual ("bent over, moaning, seksi")."""
    if not shown or not rules.force_safe.find(shown[0]) or rules.classifier is None:
        return True
    rest = rules.force_safe.remove_from(plain)
    rest = " ".join(word for word in rest.split() if word != "_")
    return rules.classifier.read(rest).scores.get("sexual", 0.0) >= max(
        plain_bar(rules), one_word_bar(rest)
    )


def plain_bar(rules: PromptRules) -> float:
    return rules.classifier.thresholds["sexual"] if rules.classifier is not None else 1.0


def person_word(rules: PromptRules, word: str) -> bool:
    """The word is, whole, a word for a minor or a person."""
    return any(matched == word for _, _, matched in rules.minors.find(word)) or any(
        section == "people" and matched == word for _, section, matched in rules.negative.find(word)
    )
