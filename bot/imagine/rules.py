"""The prompt rules in force in a guild: the shipped ones plus the guild's own (and the global)
entries, and a verdict on a prompt without a model or a worker."""

from __future__ import annotations

import dataclasses

from generation.errors import InvalidOption
from generation.options import GenerationOptions, OptionLimits
from generation.prompt_syntax import check_weights
from moderation.guild_rules import GuildRulesCache
from moderation.lists import GuildRule, PromptRules, RuleAction
from moderation.policy import GorePolicy, apply_gore_policy
from moderation.prompts import PromptVerdict, check_prompt, typed_negative_apart
from storage.guild_settings import GuildSettingsRecord
from storage.terms import TermList, TermRecord


def gore_policy(settings: GuildSettingsRecord | None) -> GorePolicy:
    """The guild's gore policy (outside a guild, the default one)."""
    return GorePolicy.AGE_RESTRICTED if settings is None else GorePolicy(settings.gore_policy)


def negative_moved(
    options: GenerationOptions, rules: PromptRules, limits: OptionLimits
) -> GenerationOptions:
    """The options with a negative prompt typed into the prompt ("a portrait, negative prompt:
    nsfw, lowres", "--no text") made the negative prompt, so the generator avoids what the
    member meant it to avoid; InvalidOption when nothing is left to draw or the negative prompt
    grows past the limit."""
    prompt, negative = typed_negative_apart(options.prompt, options.negative_prompt, rules)
    if (prompt, negative) == (options.prompt, options.negative_prompt):
        return options
    if not prompt:
        raise InvalidOption(
            "prompt", options.prompt, "words to draw beside the negative prompt typed into it"
        )
    if len(negative) > limits.max_prompt_chars:
        raise InvalidOption(
            "negative prompt", f"{negative[:40]}… ({len(negative)} characters, with the one "
            "typed into the prompt)", f"at most {limits.max_prompt_chars} characters",
        )  # fmt: skip
    check_weights(prompt)  # taking a marker out may make a weight ("(fur:40 --no x | )")
    check_weights(negative)
    return dataclasses.replace(options, prompt=prompt, negative_prompt=negative)


def guild_rule(record: TermRecord) -> GuildRule:
    return GuildRule(RuleAction(record.kind.value), record.term, is_regex=record.is_regex)


async def guild_entries(terms: TermList, guild_id: int | None) -> tuple[GuildRule, ...]:
    """The guild's own (and the global) entries in force now, in the order they were added."""
    return tuple(guild_rule(record) for record in await terms.for_guild(guild_id))


async def rules_for(
    terms: TermList,
    base: PromptRules,
    guild_id: int | None,
    *,
    cache: GuildRulesCache | None = None,
) -> PromptRules:
    """The shipped rules plus the guild's own (and the global) entries in force now, built in
    a thread; with ``cache`` (the bot's), built once per set of entries. An entry that fails
    today's checks is skipped with a warning (see ``moderation.guild_rules``)."""
    cache = cache or GuildRulesCache(base)
    return await cache.rules(await guild_entries(terms, guild_id), guild_id=guild_id)


async def moderate(
    terms: TermList,
    prompt: str,
    guild_id: int | None = None,
    negative_prompt: str = "",
    *,
    gore_policy: GorePolicy = GorePolicy.AGE_RESTRICTED,
    channel_nsfw: bool = False,
) -> PromptVerdict:
    """The verdict on a prompt, without a model or a worker, under a gore policy in a channel
    (by default one that is not age-restricted, where gore is refused)."""
    rules = await rules_for(terms, PromptRules.default(), guild_id)
    verdict = check_prompt(prompt, rules, negative_prompt)
    return apply_gore_policy(verdict, gore_policy, channel_nsfw)
