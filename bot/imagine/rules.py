"""The prompt rules in force in a guild: the shipped ones plus the guild's own (and the global)
entries, and a verdict on a prompt without a model or a worker."""

from __future__ import annotations

from moderation.guild_rules import GuildRulesCache
from moderation.lists import GuildRule, PromptRules, RuleAction
from moderation.prompts import PromptVerdict, check_prompt
from storage.terms import TermList, TermRecord


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
    terms: TermList, prompt: str, guild_id: int | None = None, negative_prompt: str = ""
) -> PromptVerdict:
    """The verdict on a prompt, without a model or a worker."""
    rules = await rules_for(terms, PromptRules.default(), guild_id)
    return check_prompt(prompt, rules, negative_prompt)
