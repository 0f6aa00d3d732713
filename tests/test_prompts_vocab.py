"""The rules fed by the vocabulary files: emoji, clothing left out inside the prompt, a negative
prompt typed into it, gore, the allow names, terms in scripts without spaces, the classifier."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from importlib import resources

import pytest

from moderation.lists import GuildRule, PromptRules, RuleAction
from moderation.policy import GorePolicy, apply_gore_policy
from moderation.prompts import check_prompt
from moderation.reasons import LAYERS, MINORS_REASON, RULES, reason_labels
from moderation.terms import Term, TermIndex, TermShape, parse_term

# The rules alone (the exact layer); the classifier's part is TestClassifierHook's.
DEFAULT = dataclasses.replace(PromptRules.default(), classifier=None)


def refused(prompt: str, negative: str = "") -> tuple[str, ...]:
    verdict = check_prompt(prompt, DEFAULT, negative)
    assert not verdict.allowed, prompt
    return verdict.reasons


def passes(prompt: str, negative: str = "") -> None:
    verdict = check_prompt(prompt, DEFAULT, negative)
    assert verdict.allowed, (prompt, verdict.reasons)
    assert not verdict.gore, (prompt, verdict.gore)


class TestEmoji:
    @pytest.mark.parametrize(
        "prompt", ["🍑 pie recipe", "🍆 at the market", "a vegetable stand with 🍆 and 🍅"]
    )
    def test_innocent_use_passes(self, prompt: str) -> None:
        passes(prompt)

    def test_a_strong_one_refuses_on_its_own(self) -> None:
        assert refused("🍆💦") == ("'🍆💦 (penis ejaculation)' is not allowed (default list)",)
        assert refused("a photo, 🔞")

    def test_a_weak_one_needs_a_person_or_another_cue(self) -> None:
        assert "'🍑 (butt)' is not allowed (default list)" in refused("a woman holding a 🍑")
        assert refused("a woman showing her 🍑") == (
            "'her 🍑 (butt)' is not allowed (default list)",
        )
        assert refused("girl 🍑💦")  # the combination is listed as strong
        assert refused("🍑 nsfw")  # another sexual cue

    @pytest.mark.parametrize(
        "prompt",
        [
            "a little girl eating a 🍑 at a picnic, checkered blanket",
            "🍑🧺 woman carrying a basket of peaches through a market",
            "🍆 old man selling eggplants from a cart, Cairo street",
            "👅 puppy licking a child's face, backyard",
            "👅🍦 toddler licking an ice cream cone",
            "🥵 runner after a marathon, red face, medal around her neck",
            "🥵 spicy ramen challenge, woman fanning her mouth",
            "💦 man jumping off a pier into a lake, summer vacation",
            "💦 tears of joy, graduate hugging her mom",
            "🔞 age verification sign at a liquor store counter",
            "🌮🌮 taco tuesday, family dinner",
            "cat 🐱 out in the garden with a girl",
            "a man and his 🐱 on the sofa",
            "her 🐱 in the garden",
            "grandma and her 🍑 pie",
            "man eating his 🍆 parm",
        ],
    )
    def test_in_its_ordinary_context_a_weak_one_is_no_cue(self, prompt: str) -> None:
        """Beside a person too: the context word gives the emoji its ordinary sense."""
        passes(prompt)

    @pytest.mark.parametrize(
        ("prompt", "reading"),
        [
            ("soaping her 🍒 in the shower", "'her 🍒 (breasts)'"),
            ("peach orchard, her 🍑 in the sun", "'her 🍑 (butt)'"),  # context does not undo it
            ("woman, 🍒 flash in the car", "'🍒 flash (breasts out)'"),
            ("🐱 slip, woman getting out of a car", "'🐱 slip (vagina out)'"),
            ("👩 🍒 uncovered on stage", "'🍒 uncovered (breasts out)'"),  # 👩 is a person
            ("🍆 👄 💦 swallow", "'🍆 (penis)'"),  # one emoji between two weak ones
            ("you know what 🍆➡️🌮", "'🌮 (vagina)'"),
            ("🚫👙 🚫👗 woman on a horse", "'🚫👙 (no bikini)'"),
            ("girlfriend 👗⬇️ in the bedroom", "'👗⬇ (no dress)'"),
            ("woman on a yacht 👙➡️❌", "'👙➡❌ (no bikini)'"),
            ("🥒 inside her 🐱", "'inside her 🐱 (vagina)'"),
        ],
    )
    def test_made_a_body_part_or_a_garment_taken_off(self, prompt: str, reading: str) -> None:
        assert any(reason.startswith(reading) for reason in refused(prompt)), refused(prompt)

    def test_a_garment_crossed_out_needs_a_person(self) -> None:
        passes("👙❌ sign at the hotel pool")

    @pytest.mark.parametrize("run", ["🍑" * 1000, "💦" * 1000, "(a)" + "💦" * 995])
    def test_a_long_run_of_emoji_is_read_at_once(self, run: str) -> None:
        """Each emoji's context is looked for near it, not in the whole prompt (0.6-1.4 s a
        1000-emoji prompt before); a generous ceiling, far above the milliseconds it takes."""
        started = time.monotonic()
        check_prompt(run, DEFAULT)
        assert time.monotonic() - started < 5

    def test_skin_tones_and_selectors_do_not_hide_one(self) -> None:
        assert refused("👉\U0001f3fb👌\ufe0f")

    def test_with_a_minor_it_is_the_minors_rule(self) -> None:
        assert MINORS_REASON in refused("a 12 year old 🍆💦")
        passes("kids eating 🍑 at a picnic")  # read in its ordinary sense: no cue
        assert MINORS_REASON in refused("a 10 year old girl 🥵 on the bed")  # a weak one is
        assert MINORS_REASON in refused("a little girl 🔞 sign")  # context never excuses 🔞

    def test_a_child_emoji_is_a_word_about_minors(self) -> None:
        passes("a mother and her 👧 in the park")
        assert refused("👧 nude") == (MINORS_REASON, "'nude' is not allowed (default list)")
        assert MINORS_REASON in refused("👧🍆💦")


class TestClothingLeftOut:
    @pytest.mark.parametrize(
        ("prompt", "words"),
        [
            ("woman, no clothes", "no clothes"),
            ("a woman without any clothing on a bed", "without any clothing"),
            ("woman taking off her bra", "taking off her bra"),
            ("a girl with her panties pulled down", "panties pulled down"),
            ("mujer sin ropa en la playa", "sin ropa"),
            ("frau ohne kleidung", "ohne kleidung"),
        ],
    )
    def test_on_a_person_it_is_refused(self, prompt: str, words: str) -> None:
        assert f"the prompt leaves out clothing ('{words}') on a person" in refused(prompt)

    @pytest.mark.parametrize(
        "prompt",
        [
            "a city street, no people",
            "a poster, no text, no watermark",
            "a woman without glasses reading",
            "a man taking off his hat",
            "a woman takes off her coat in the hall",
            "a model in a dress with no sleeves",
            "no people, a dress on a mannequin",  # another clause
            "a woman in a red dress on a street with no cars",
        ],
    )
    def test_other_negation_passes(self, prompt: str) -> None:
        passes(prompt)

    def test_without_a_person_it_is_made_force_safe(self) -> None:
        verdict = check_prompt("an empty shop window without a dress on the hanger", DEFAULT)
        assert verdict.allowed
        assert verdict.safe_reasons == ("the prompt leaves out clothing ('without a dress')",)

    def test_with_a_minor_it_is_the_minors_rule(self) -> None:
        assert MINORS_REASON in refused("a little girl without her dress")


class TestTypedNegativePrompt:
    @pytest.mark.parametrize(
        "prompt",
        [
            "portrait of a woman, negative prompt: clothes, lowres",
            "a woman on a bed --no clothing --ar 2:3",
            "portrait of a woman. Negative: clothes",
        ],
    )
    def test_it_is_read_as_the_negative_prompt(self, prompt: str) -> None:
        reasons = refused(prompt)
        assert any(r.startswith("the negative prompt leaves out clothing (cloth") for r in reasons)

    def test_safety_words_there_are_avoided(self) -> None:
        # Admission makes it the negative prompt (tests/test_typed_negative.py).
        passes("portrait of a woman, negative prompt: nsfw, nude, lowres")
        passes("a mountain lake --no people --ar 16:9")


class TestGore:
    def test_gore_terms_are_read_not_refused(self) -> None:
        verdict = check_prompt("a decapitated body, entrails on the floor", DEFAULT)
        assert verdict.allowed
        assert "'entrails' reads as gore (default list)" in verdict.gore
        assert all(reason_labels(reason) == ("gore", "default") for reason in verdict.gore)
        outside = apply_gore_policy(verdict, GorePolicy.AGE_RESTRICTED, channel_nsfw=False)
        assert not outside.allowed
        assert apply_gore_policy(verdict, GorePolicy.AGE_RESTRICTED, channel_nsfw=True).allowed
        # A negator elsewhere does not take it back.
        assert check_prompt("no people, entrails on the floor", DEFAULT).gore

    @pytest.mark.parametrize(
        "prompt",
        [
            "a knight fighting a dragon",
            "a war memorial at dawn",
            "a zombie costume party",
            "a battle scene at dusk, no gore",  # negated where it stands
            "a samurai duel, gore-free, ink painting",
        ],
    )
    def test_mild_violence_is_no_gore(self, prompt: str) -> None:
        passes(prompt)


class TestAllowNames:
    @pytest.mark.parametrize(
        "prompt", ["Penistone market square", "a pub in Cockermouth", "Middlesex fields"]
    )
    def test_names_pass(self, prompt: str) -> None:
        passes(prompt)

    def test_never_before_the_minors_rule(self) -> None:
        assert MINORS_REASON in refused("a nude child in Penistone")


def test_a_word_in_another_script_beside_english_keeps_its_reading() -> None:
    """Russian or Greek in an English prompt stays itself in one reading ("секс" would fold to
    the look-alike "cekc"), while a disguised English word still folds ("a рогп video")."""
    assert refused("a photo, секс")
    assert refused("portrait, γυμνη")
    assert "'porn' is not allowed (default list)" in refused("a рогп video")
    assert MINORS_REASON in refused("гoлая дeвочка")  # Latin o and e inside Russian words


def test_terms_in_scripts_without_spaces_match_inside_words() -> None:
    index: TermIndex[None] = TermIndex(
        (parse_term(word), None) for word in ("裸", "เปลือย", "소녀", "नंगी", "عارية", "ペニス")
    )

    def found(view: str) -> list[str]:
        from moderation.normalise import normalise

        return [term.text for term, _, _ in index.find(normalise(view))]

    assert found("裸の女性") == ["裸"]  # Japanese, inside a run of letters
    assert found("ผู้หญิงเปลือยกาย") == ["เปลือย"]  # Thai
    assert found("소녀가 공원에") == ["소녀"]  # Korean: at a word's start, with its particle
    assert found("공원의 어린소녀") == []  # not in the middle of a word
    assert found("नंगी लड़की") == ["नंगी"]  # Devanagari keeps its vowel signs...
    assert found("नगी लड़की") == []  # ...so a word without them is another word
    assert found("امرأة عارية") == ["عارية"]
    assert found("عار") == []
    assert found("ペニスの絵") == ["ペニス"]  # a kana's voicing mark stays part of it...
    assert found("ヘニスの絵") == []  # ...so the word without it is another


def test_phrases_and_wildcards_keep_their_old_matches() -> None:
    """The word-by-word matcher: at each word the longest entry, the plural of a phrase, a
    wildcard inside a word, the next match after the last."""
    index: TermIndex[int] = TermIndex(
        [
            (Term("strip club", TermShape.PHRASE), 1),
            (Term("strip", TermShape.PREFIX), 2),
            (Term("porn", TermShape.ANYWHERE), 3),
            (Term("shota", TermShape.SUFFIX), 4),
        ]
    )
    view = "a strip clubs near xpornx lolishota stripper"
    found = [(value, words) for _, value, words in index.find(view)]
    assert found == [(1, "strip clubs"), (3, "xpornx"), (4, "lolishota"), (2, "stripper")]
    assert index.remove_from("a strip club stripper") == "a _ _"


@dataclass
class StandIn:
    """A classifier that reads the words it was given."""

    sexual: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(
        default_factory=lambda: {"sexual": 0.8, "gore": 0.8, "minors": 0.4}
    )

    def read(self, prompt: str) -> Reading:
        score = max((v for word, v in self.sexual.items() if word in prompt), default=0.0)
        gore = 0.9 if "mangled" in prompt else 0.0
        return Reading({"sexual": score, "gore": gore}, self.thresholds)


@dataclass(frozen=True)
class Reading:
    scores: dict[str, float]
    thresholds: dict[str, float]
    cues: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"sexual": ("spicy",), "gore": ("mangled",)}
    )

    def over(self, label: str) -> bool:
        return self.scores[label] >= self.thresholds[label]


class TestClassifierHook:
    rules = dataclasses.replace(DEFAULT, classifier=StandIn({"spicy": 0.9, "cheeky": 0.5}))

    def test_over_the_bar_it_refuses_with_its_score_and_cues(self) -> None:
        verdict = check_prompt("a spicy photo of her", self.rules)
        assert verdict.reasons == ("the classifier reads it as sexual (0.90: spicy)",)
        assert reason_labels(verdict.reasons[0]) == ("classifier", "default")
        assert verdict.classifier_scores == (("gore", 0.0), ("sexual", 0.9))

    def test_it_is_the_backstop_and_a_guilds_allow_list_stands(self) -> None:
        assert check_prompt("a nude spicy woman", self.rules).reasons == (
            "'nude' is not allowed (default list)",
        )
        art = self.rules.with_guild([GuildRule(RuleAction.ALLOW, "spicy")])
        assert check_prompt("a spicy photo of her", art).allowed
        assert check_prompt("a spicy photo of a teen", art).reasons[0].startswith(MINORS_REASON)

    def test_default_uses_the_shipped_one_when_there_is_one(self) -> None:
        shipped = resources.files("moderation").joinpath("data", "classifier").is_dir()
        assert (PromptRules.default().classifier is not None) == shipped

    def test_with_a_minor_the_lower_bar_is_enough(self) -> None:
        assert check_prompt("a cheeky photo of her", self.rules).allowed
        reasons = check_prompt("a cheeky photo of a teen", self.rules).reasons
        assert reasons == (f"{MINORS_REASON} (the classifier: 0.50: spicy)",)
        assert check_prompt("a photo of a teen", self.rules).allowed

    def test_gore_goes_to_the_verdicts_gore(self) -> None:
        verdict = check_prompt("a mangled car", self.rules)
        assert verdict.allowed
        assert verdict.gore == ("the classifier reads it as gore (0.90: mangled)",)
        assert reason_labels(verdict.gore[0]) == ("gore", "default")

    def test_nothing_but_counts_only_said_of_a_person(self) -> None:
        @dataclass
        class Idiom(StandIn):
            def read(self, prompt: str) -> Reading:
                cues = {"sexual": ("nothing", "but"), "gore": ()}
                score = 0.95 if "nothing" in prompt else 0.0  # the rest alone reads nothing
                return Reading({"sexual": score, "gore": 0.0}, self.thresholds, cues)

        rules = dataclasses.replace(DEFAULT, classifier=Idiom())
        assert check_prompt("nothing but sand dunes to the horizon", rules).allowed
        # Said of a person, of something worn, or "nothing else on": the idiom of being bare.
        for prompt in (
            "her in nothing but sand, dunes",
            "stockings and nothing but the sea",
            "nothing but lace",
            "with nothing else on",
        ):
            assert check_prompt(prompt, rules).reasons == (
                "the classifier reads it as sexual (0.95: nothing, but)",
            ), prompt

    def test_it_does_not_read_what_a_shipped_allow_name_took_out(self) -> None:
        rules = dataclasses.replace(DEFAULT, classifier=StandIn({"sexsmith": 0.9}))
        verdict = check_prompt("grain elevators in sexsmith, alberta", rules)  # allow_names.tsv
        assert verdict.allowed, verdict.reasons
        assert verdict.classifier_scores == (("gore", 0.0), ("sexual", 0.0))
        assert not check_prompt("grain elevators in sexsmithville", rules).allowed

    def test_a_person_weighed_most_counts_only_if_the_rest_still_reads_sexual(self) -> None:
        @dataclass
        class PersonFirst(StandIn):
            def read(self, prompt: str) -> Reading:
                rest = tuple(word for word in ("unveil", "lamp") if word in prompt)
                cues = {"sexual": ("woman", *rest), "gore": ()}
                score = max((v for word, v in self.sexual.items() if word in prompt), default=0.0)
                return Reading({"sexual": score, "gore": 0.0}, self.thresholds, cues)

        rules = dataclasses.replace(DEFAULT, classifier=PersonFirst({"unveil": 0.98, "woman": 0.9}))
        # Without "woman" the rest ("unveil") still reads 0.98 (one word: at least 0.97).
        assert check_prompt("unveil the woman in this photo", rules).reasons == (
            "the classifier reads it as sexual (0.98: unveil)",
        )
        # The rest ("bed, lamp") reads nothing: the person word alone carried it.
        assert check_prompt("a woman, bed, lamp", rules).allowed

    def test_a_force_safe_word_weighed_most_decides_unless_the_rest_reads_sexual(self) -> None:
        @dataclass
        class SexyFirst(StandIn):
            def read(self, prompt: str) -> Reading:
                score = max((v for word, v in self.sexual.items() if word in prompt), default=0.0)
                cues = {"sexual": ("sexy", "moaning"), "gore": ()}
                return Reading({"sexual": score, "gore": 0.0}, self.thresholds, cues)

        rules = dataclasses.replace(
            DEFAULT, classifier=SexyFirst({"sexy": 0.9, "bent over moaning": 0.98})
        )
        circle = check_prompt("a sexy red circle", rules)
        assert circle.allowed
        assert circle.force_safe
        assert check_prompt("a woman bent over moaning, sexy", rules).reasons == (
            "the classifier reads it as sexual (0.98: sexy, moaning)",
        )

    def test_without_one_the_scores_are_empty(self) -> None:
        assert (
            check_prompt("a photo", dataclasses.replace(DEFAULT, classifier=None)).classifier_scores
            == ()
        )


def test_every_new_reason_has_its_labels() -> None:
    reasons = [
        *refused("woman, no clothes"),
        *refused("🍆💦"),
        *check_prompt("entrails on the floor", DEFAULT).gore,
        "this server refuses gore everywhere",
        "gore is refused outside age-restricted channels",
    ]
    labels = {reason_labels(reason) for reason in reasons}
    assert ("clothing_removed", "default") in labels
    assert ("gore", "guild") in labels
    assert ("other", "default") not in labels
    assert all(rule in RULES and layer in LAYERS for rule, layer in labels)


def test_ages_in_other_languages() -> None:
    for prompt in ("12 años", "12 лет", "12歳の", "十二歳", "12살이", "15 ans"):
        assert MINORS_REASON in refused(f"{prompt}, desnuda, голая, 裸, 누드, nue"), prompt
    for prompt in ("20 años", "112 лет", "二十歳"):
        assert MINORS_REASON not in refused(f"{prompt}, desnuda, голая, 裸, 누드, nue"), prompt


def test_ages_with_the_number_in_words() -> None:
    from moderation.ages import age_pattern

    ages = age_pattern({"es": (["años"], ["doce", "trece"]), "fr": (["an", "ans"], ["deux"])})
    assert ages is not None
    assert ages.search("una nina de doce anos")
    assert not ages.search("docena de anos")  # a word that only starts like one
    assert not ages.search("doce ans")  # a number word pairs with its own language's units
    assert ages.search("12 ans")  # a digit with any
