"""Prompt rules, layer by layer: each decides with its own reason, and fails when it breaks."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from common.errors import ErrorKind, SdbotError
from moderation import errors, lists, profanity, terms
from moderation.errors import InvalidTerm
from moderation.lists import GuildRule, PromptRules, RuleAction, validate_rule
from moderation.prompts import check_prompt

# The rules alone (the exact layer); the classifier is tests/test_prompts_vocab.py's.
RULES = dataclasses.replace(PromptRules.default(), classifier=None)
MINORS = "sexual content involving minors is never allowed"


def guild(*rules: tuple[RuleAction, str] | tuple[RuleAction, str, bool]) -> PromptRules:
    return RULES.with_guild(GuildRule(*rule) for rule in rules)


@pytest.mark.parametrize(
    "prompt",
    [
        "a lighthouse at dusk",
        "grilled chicken breast with rosemary, food photography",
        "a naked mole rat in a burrow",
        "nude lipstick on a marble table",
        "Scunthorpe high street in the rain",
        "children playing soccer in a park",
        "a breastfeeding mother in a sunlit kitchen",
        "a cocktail party on a rooftop",
        "an essex village, a sussex spaniel, a sextant on a map",
        "a gay couple's wedding",  # identity words are excluded from the profanity list
        "a cowgirl on a horse at sunset",
        "a knight going in for the kill against a dragon",
        "R2-D2 and a B-52 bomber, 4k, 1990s",
        "a 12 year old boy playing chess",
        "a blue tit and a great tit bird on a feeder",
        "a pen is on the desk, my friend's ex boyfriend",  # fragments that are not evasions
        "an eighteen year old woman graduating",
    ],
)
def test_benign_prompts_pass(prompt: str) -> None:
    verdict = check_prompt(prompt, RULES)
    assert verdict.allowed, verdict.reasons
    assert not verdict.force_safe, verdict.safe_reasons


@pytest.mark.parametrize(
    ("prompt", "word"),
    [
        ("c*m on her face, realistic", "cum"),
        ("f*cking couple", "fuck"),
        ("f**king couple", "fuck"),
        ("p***y close up", "pussy"),
        ("b**bs out at the festival", "boobs out"),
        ("n*k*d woman on a hammock", "naked"),
        ("bre*sts exposed, portrait photo", "breasts exposed"),
        ("f_ck1ng couple in the back seat of a car", "fuck"),
    ],
)
def test_starred_out_words_are_read_whole(prompt: str, word: str) -> None:
    reasons = check_prompt(prompt, RULES).reasons
    assert any(reason.startswith(f"'{word}' is not allowed") for reason in reasons), reasons


@pytest.mark.parametrize(
    "prompt",
    [
        "the c*t in the hat",
        "**bold** sunset over the sea",
        "5*5 grid of tiles",
        "a*b test",
        "a guitarist playing a C#m chord, children's choir",
        "masterpiece, best_quality, no_humans, user_123",
    ],
)
def test_stars_that_hide_no_listed_word_change_nothing(prompt: str) -> None:
    assert check_prompt(prompt, RULES).allowed


def test_a_run_of_stars_is_read_at_once() -> None:
    # Each run of stars split every way between the repeats: 2**40 tries before the fix.
    started = time.perf_counter()
    for prompt in ("a" + "*" * 40 + "1", "a**" * 400 + "1", "*" * 10_000):
        assert check_prompt(prompt, RULES).allowed
    assert time.perf_counter() - started < 5  # milliseconds in fact; hours before


def test_a_name_that_is_a_rude_word_needs_its_context() -> None:
    # allow_names.tsv: "Pussy" (a village in Savoie) is the name only beside Savoie or its valley.
    assert check_prompt("Pussy, a village in Savoie, alpine houses", RULES).allowed
    assert check_prompt("old church of pussy, la léchère, tarentaise", RULES).allowed
    for prompt in ("pussy in the alps", "a photo of her pussy, village girl next door"):
        verdict = check_prompt(prompt, RULES)
        assert "'pussy' is not allowed (profanity list)" in verdict.reasons, prompt


def test_a_place_named_with_a_listed_word_is_no_place_beside_a_person() -> None:
    # "Intercourse, Pennsylvania", "Titty Ho": written after a sexual clause, no place.
    assert check_prompt("the Amish buggy in Intercourse, Pennsylvania", RULES).allowed
    assert check_prompt("church in Titty Ho, Northamptonshire", RULES).allowed
    assert not check_prompt("a woman having intercourse, Pennsylvania", RULES).allowed
    assert not check_prompt("Savoie: a woman spreading her wet pussy", RULES).allowed
    for prompt in ("a teen girl having intercourse, Pennsylvania", "a 14 year old, titty ho"):
        assert MINORS in check_prompt(prompt, RULES).reasons, prompt
    # A name that only holds a listed word inside one of its words stays a place for all.
    assert check_prompt("a school trip to Middlesex, children", RULES).allowed


@pytest.mark.parametrize(
    ("prompt", "allowed"),
    [
        ("rugby scrum, the hooker striking for the ball", True),
        ("une chatte noire qui dort au soleil, ses chatons", True),
        ("en kock som lagar köttbullar i ett litet kök", True),
        ("a hooker on a street corner at night, nude", False),
        ("une femme montre sa chatte", False),
        ("une femme et sa chatte, chatons", False),  # a person named: the word stays
    ],
)
def test_a_word_that_is_also_an_innocent_name_needs_its_context(prompt: str, allowed: bool) -> None:
    assert check_prompt(prompt, RULES).allowed is allowed, check_prompt(prompt, RULES).reasons


def test_lolita_fashion_is_a_style_and_lolita_alone_is_not() -> None:
    assert check_prompt("a woman in a gothic lolita dress at a tea party", RULES).allowed
    assert check_prompt("sweet lolita fashion walk in Harajuku, pastel", RULES).allowed
    assert MINORS in check_prompt("lolita in a bikini", RULES).reasons
    assert MINORS in check_prompt("gothic lolita dress, schoolgirl, sexy", RULES).reasons


@pytest.mark.parametrize(
    "prompt",
    [
        "a nude woman",
        "NuDe woman",  # case
        "a nud3 woman",  # leetspeak
        "a n\u200bu\u00adde woman",  # zero-width space, soft hyphen
        "a nud\u0435 woman",  # Cyrillic e
        "a n\u03bfde woman".replace("\u03bf", "u\u200d"),  # zero-width joiner
        "ｎｕｄｅ portrait",  # fullwidth
        "𝐧𝐮𝐝𝐞 portrait",  # mathematical bold
        "n\u0308u\u0301de portrait",  # combining marks
        "a n u d e woman",  # spaced
        "a n.u.d.e woman",  # dotted
        "a nu-de woman",  # split by a dash
        "a nuuuuude woman",  # repeats
        "a n.u.d.3 w0man",  # mixed
        "nudewoman on a beach",  # glued
    ],
)
def test_every_kind_of_evasion_is_folded(prompt: str) -> None:
    verdict = check_prompt(prompt, RULES)
    assert not verdict.allowed
    assert "'nude' is not allowed (default list)" in verdict.reasons


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        ("p0rn", "'porn' is not allowed (default list)"),
        ("a nu de woman", "'nude' is not allowed (default list)"),  # fragments joined
        ("po rn video", "'porn' is not allowed (default list)"),
        ("ɴᴜᴅᴇ 🅽🆄🅳🅴", "'nude' is not allowed (default list)"),  # small caps, enclosed letters
        ("a woman with great tits", "'tit' is not allowed (profanity list)"),  # not the bird
        ("$3x scene", "'sex' is not allowed (default list)"),
        ("a s h i t sign", "'shit' is not allowed (profanity list)"),  # "a" stays an article
        ("pоrnstar", "'porn' is not allowed (default list)"),  # Cyrillic o, glued
    ],
)
def test_reasons_name_the_term_and_its_layer(prompt: str, reason: str) -> None:
    assert check_prompt(prompt, RULES).reasons == (reason,)


def test_the_profanity_layer_is_its_list_normalised_now() -> None:
    """The committed profanity_terms.txt is what better-profanity's list, the exclusions and the
    normalisation give today; when one changes, run `python -m moderation.profanity`."""
    derived = profanity.derive()
    assert profanity.render(derived) == profanity.TERMS_PATH.read_text(encoding="utf-8")
    assert lists._profanity_terms() == derived  # read back as it was written, shapes and all
    assert {term.shape for term in derived} >= {terms.TermShape.WORD, terms.TermShape.PHRASE}


def test_force_safe_terms_pass_with_their_reason() -> None:
    verdict = check_prompt("a sexy sports car", RULES)
    assert (verdict.allowed, verdict.force_safe) == (True, True)
    assert verdict.safe_reasons == ("'sexy' is on the force-safe list (default list)",)
    assert verdict.summary().startswith("allowed, force safe: ")
    # A wider block term ("sex*") leaves a force-safe word to its own list...
    assert check_prompt("sexygirl", RULES).force_safe
    # ...but still blocks the words it is there for.
    assert not check_prompt("sexgirl", RULES).allowed


class TestMinorsRule:
    @pytest.mark.parametrize(
        "prompt",
        [
            "a nude child",
            "a teen in lingerie",
            "13yo in a bikini",
            "young girl, sexy",
            "sexy girl, age 12",
            "aged 12, lingerie",
            "lingerie, 12yrs",
            "twelve years old in a bikini",
            "5th grader in a bikini",
            "sexy little sister",
            "preschooler in lingerie",
            "s e x y c h i l d",  # the minor word inside joined letters
            "lolicon",
            "teen with great tits",  # no allow phrase ("great tits", a bird) applies here
            "schoolgirl, horny toad",
        ],
    )
    def test_minor_and_sexual_terms_are_refused(self, prompt: str) -> None:
        assert MINORS in check_prompt(prompt, RULES).reasons

    def test_minor_terms_alone_pass(self) -> None:
        for prompt in ("a teen reading a book", "kids at a pool in swimsuits", "a baby in a crib"):
            assert check_prompt(prompt, RULES).allowed, prompt

    def test_no_guild_setting_turns_it_off(self) -> None:
        lax = guild(
            (RuleAction.ALLOW, "nude"),
            (RuleAction.ALLOW, "a nude child"),
            (RuleAction.ALLOW, "boobs"),  # from the profanity list
            (RuleAction.ALLOW, "cum"),
        )
        assert check_prompt("a nude woman", lax).allowed  # the guild allowed the default term
        for prompt in ("a nude child", "teen boobs", "cum on a teen"):
            assert check_prompt(prompt, lax).reasons == (MINORS,), prompt

    def test_clothing_left_out_by_the_negative_prompt_counts(self) -> None:
        assert MINORS in check_prompt("a little girl on a bed", RULES, "clothes").reasons
        # With a minor, any one clothing word is enough.
        assert MINORS in check_prompt("a child on a bed", RULES, "underwear").reasons
        assert check_prompt("a child on a bed", RULES, "blurry, lowres").allowed


class TestNegativePrompt:
    def test_nsfw_terms_there_keep_images_clean(self) -> None:
        verdict = check_prompt("portrait of a woman", RULES, "nsfw, nude, naked, lowres")
        assert verdict.allowed
        assert not verdict.force_safe

    def test_leaving_out_clothing_on_a_person_is_refused(self) -> None:
        verdict = check_prompt("portrait of a woman on a bed", RULES, "c1othes, dress")
        assert verdict.reasons == (
            "the negative prompt leaves out clothing (clothes) in a picture of a person",
        )
        # Two weaker words count together; one alone does not.
        assert not check_prompt("a woman posing", RULES, "shirt, pants").allowed
        assert check_prompt("a man in a suit", RULES, "dress, lowres").allowed
        # Safety phrases people write there are not clothing left out.
        assert check_prompt("a woman warrior", RULES, "nsfw, revealing clothes").allowed
        # Booru tags name people too.
        assert not check_prompt("1girl, solo, on a bed", RULES, "clothes").allowed

    def test_without_a_person_it_makes_the_request_force_safe(self) -> None:
        verdict = check_prompt("an empty bedroom", RULES, "clothes, clutter")
        assert verdict.allowed
        assert verdict.force_safe
        assert verdict.safe_reasons == ("the negative prompt leaves out clothing (clothes)",)


class TestGuildRules:
    def test_block_allow_and_force_safe_terms(self) -> None:
        rules = guild(
            (RuleAction.BLOCK, "clown*"),
            (RuleAction.ALLOW, "cock"),
            (RuleAction.FORCE_SAFE, "swimsuit"),
        )
        assert check_prompt("a clownish parade", rules).reasons == (
            "'clown' is not allowed (this server's list)",
        )
        assert check_prompt("a clownish parade", RULES).allowed  # only in that guild
        assert check_prompt("a cock on a farm fence", rules).allowed  # a poultry server
        assert not check_prompt("a cock on a farm fence", RULES).allowed
        verdict = check_prompt("a model in a swimsuit", rules)
        assert verdict.safe_reasons == (
            "'swimsuit' is on the force-safe list (this server's list)",
        )

    def test_a_guild_force_safe_entry_cannot_soften_a_default_block(self) -> None:
        rules = guild((RuleAction.FORCE_SAFE, "sexgirl"))
        assert check_prompt("sexgirl", rules).reasons == ("'sex' is not allowed (default list)",)

    def test_patterns(self) -> None:
        rules = guild(
            (RuleAction.BLOCK, r"\bclowns?\b.*\bcars?\b", True),
            (RuleAction.FORCE_SAFE, r"\bbeach(es)?\b", True),
        )
        verdict = check_prompt("Clowns in a tiny car", rules)
        assert verdict.reasons == (
            r"matches the pattern '\bclowns?\b.*\bcars?\b' (this server's list)",
        )
        assert check_prompt("clowns at a circus", rules).allowed
        assert check_prompt("a beach at dawn", rules).force_safe

    def test_a_pattern_that_runs_out_of_time_counts_as_matching(self) -> None:
        # Stored before the probes existed (so not probed when read back), and slow on this text.
        pattern = GuildRule(RuleAction.BLOCK, r"^(a|aa)+$", is_regex=True)
        with pytest.raises(InvalidTerm, match="can take too long"):
            RULES.with_guild([pattern])  # what storing it now says
        runaway = RULES.with_guild([pattern], probe=False)
        assert check_prompt("aaaa", runaway).reasons  # it does match what it is for
        assert check_prompt("a lighthouse", runaway).allowed
        started = time.monotonic()
        verdict = check_prompt("a" * 40 + "c", runaway)  # seconds of backtracking, unbounded
        assert time.monotonic() - started < 0.5
        assert verdict.reasons == ("matches the pattern '^(a|aa)+$' (this server's list)",)

    @pytest.mark.parametrize(
        ("rule", "message"),
        [
            (GuildRule(RuleAction.ALLOW, "cats?"), "regular expressions work for block and force"),
            (GuildRule(RuleAction.BLOCK, "("), "not a valid regular expression"),
            (GuildRule(RuleAction.BLOCK, r"(a+)+$"), "can take too long"),
            (GuildRule(RuleAction.BLOCK, r"x*"), "matches empty text"),
            (GuildRule(RuleAction.BLOCK, "x" * 201), "at most 200 characters"),
        ],
    )
    def test_bad_patterns_are_refused_with_the_reason(self, rule: GuildRule, message: str) -> None:
        pattern = GuildRule(rule.action, rule.text, is_regex=True)
        with pytest.raises(InvalidTerm, match=message):
            RULES.with_guild([pattern])

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("a{1000000000}", "'a{1000000000}' repeats 1000000000 times; a count may be at most"),
            ("a{5000000}", "repeats 5000000 times; a count may be at most 1000"),
            ("x{2,5000}", "repeats 5000 times"),
            ("[{]{2000}", "repeats 2000 times"),  # the braces inside a class are characters
            ("(?:ab){e<=5000}", "repeats 5000 times"),  # a fuzzy count too
            ("(a{100}){101}", "expands to over 10000 items (nested counts multiply"),
            ("((a{30}){30}){30}", "expands to over 10000 items"),
            (
                "(a{100}){100}(b{100}){100}",
                "expands to over 10000 items (its counted repeats add up",
            ),
        ],
    )
    def test_counted_repeats_are_bounded_before_compiling(self, text: str, message: str) -> None:
        # a{1000000000} never finished compiling (126 s), a{5000000} took 15 s and 1.5 GB.
        started = time.monotonic()
        with pytest.raises(InvalidTerm, match=re.escape(message)):
            validate_rule(GuildRule(RuleAction.BLOCK, text, is_regex=True))
        assert time.monotonic() - started < 10  # a generous ceiling on what took minutes
        stored = RULES.with_guild([GuildRule(RuleAction.BLOCK, text, True)], probe=False,
                                  skip_invalid=lambda rule, error: None)  # fmt: skip
        assert stored.patterns == ()  # read back from the database, it is left out too

    @pytest.mark.parametrize(
        "text",
        [
            r"a{1000}",
            r"(a{100}){100}",
            r"((a{10}){10}){10}",
            r"\bclo{2,1000}wns?\b",
            r"(?:x{10}){1000}",  # the group's own syntax adds nothing
            r"\p{L}{3}x",
            r"\{2000\}",  # escaped braces are characters
            r"(?#{9999})clown",  # so is a comment
            r"(?:clown){e<=1}",
        ],
    )
    def test_patterns_within_the_bounds_are_kept(self, text: str) -> None:
        validate_rule(GuildRule(RuleAction.BLOCK, text, is_regex=True))

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "must not be empty"),
            ("!!!", "has no letters or digits"),
            ("a*b", "may only stand at the start or the end"),
            ("two words*", "one-word terms only"),
            ("ab*", "at least 3 letters"),
        ],
    )
    def test_bad_terms_are_refused_with_the_reason(self, text: str, message: str) -> None:
        with pytest.raises(InvalidTerm, match=message):
            RULES.with_guild([GuildRule(RuleAction.BLOCK, text)])


def test_a_refused_entry_is_a_moderation_error_under_the_one_root() -> None:
    with pytest.raises(errors.ModerationError, match="at least 3 letters"):
        validate_rule(GuildRule(RuleAction.BLOCK, "a*"))
    assert issubclass(errors.ModerationError, SdbotError)
    assert errors.InvalidTerm("x").kind is ErrorKind.BAD_INPUT  # the CLI's exit code for it
    assert issubclass(errors.InvalidPromptSet, errors.ModerationError)
    # One class under every name it is imported by.
    assert terms.InvalidTerm is InvalidTerm is errors.InvalidTerm
