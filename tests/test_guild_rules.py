"""A guild's rules on a real database: built off the event loop, once per set of entries, and a
stored pattern beyond today's bounds skipped instead of compiled for minutes."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from bot.imagine.rules import guild_entries, rules_for
from moderation import guild_rules
from moderation.guild_rules import GuildRulesCache
from moderation.lists import GuildRule, PromptRules, RuleAction
from moderation.prompts import check_prompt
from storage.engine import SessionFactory
from storage.models import Term, TermKind, utcnow
from storage.terms import TermList

GUILD = 5
BASE = PromptRules.default()


def blocked(rules: PromptRules, prompt: str) -> bool:
    return not check_prompt(prompt, rules).allowed


async def test_a_guilds_rules_are_built_once_per_set_of_entries(sessions: SessionFactory) -> None:
    terms, cache = TermList(sessions), GuildRulesCache(BASE)
    await terms.add(GUILD, TermKind.BLOCK, "clown")
    first = await rules_for(terms, BASE, GUILD, cache=cache)
    assert blocked(first, "a clown at the fair")
    assert await rules_for(terms, BASE, GUILD, cache=cache) is first
    assert cache.builds == 1
    assert await rules_for(terms, BASE, GUILD + 1, cache=cache) is BASE  # no entries: nothing
    assert cache.builds == 1

    # Adding an entry changes the key: the next check builds the new set.
    await terms.add(GUILD, TermKind.BLOCK, r"\btrom+bones?\b", is_regex=True)
    second = await rules_for(terms, BASE, GUILD, cache=cache)
    assert cache.builds == 2
    assert blocked(second, "a trombone solo")
    assert blocked(second, "a clown")
    # So does a global entry, for every guild.
    await terms.add(None, TermKind.BLOCK, "unicycle")
    third = await rules_for(terms, BASE, GUILD, cache=cache)
    assert cache.builds == 3
    assert blocked(third, "a unicycle")

    # Removing one goes back to a set already built: no build, and the removed rule is gone.
    await terms.remove(None, TermKind.BLOCK, "unicycle")
    assert await rules_for(terms, BASE, GUILD, cache=cache) is second
    assert not blocked(second, "a unicycle")
    assert cache.builds == 3
    await terms.remove(GUILD, TermKind.BLOCK, r"\btrom+bones?\b")
    assert not blocked(await rules_for(terms, BASE, GUILD, cache=cache), "a trombone solo")

    # An entry that expires stops applying without anyone telling the cache.
    await terms.add(GUILD, TermKind.BLOCK, "juggler", expires_at=utcnow() + timedelta(seconds=1))
    assert blocked(await rules_for(terms, BASE, GUILD, cache=cache), "a juggler")
    deadline = time.monotonic() + 30
    while blocked(await rules_for(terms, BASE, GUILD, cache=cache), "a juggler"):
        assert time.monotonic() < deadline, "the expired entry still applies"
        await asyncio.sleep(0.2)


async def test_concurrent_checks_of_a_guild_wait_for_one_build(sessions: SessionFactory) -> None:
    terms, cache = TermList(sessions), GuildRulesCache(BASE)
    for number in range(20):
        await terms.add(GUILD, TermKind.BLOCK, rf"\bword{number}x+\b", is_regex=True)
    built = await asyncio.gather(*(rules_for(terms, BASE, GUILD, cache=cache) for _ in range(30)))
    assert cache.builds == 1
    assert all(rules is built[0] for rules in built)
    assert blocked(built[0], "word7xxx")


async def test_a_stored_pattern_beyond_the_bounds_does_not_stall_checks(
    sessions: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Stored before the bounds existed: straight into the table, as older code left them.
    async with sessions.begin() as session:
        for written in ("a{1000000000}", "(?:ab){5000000}"):
            await session.execute(
                insert(Term).values(guild_id=GUILD, kind="block", term=written, is_regex=True)
            )
    terms, cache = TermList(sessions), GuildRulesCache(BASE)
    await terms.add(GUILD, TermKind.BLOCK, "clown")
    caplog.set_level(logging.WARNING, logger="moderation.guild_rules")

    started = time.monotonic()
    rules = await asyncio.wait_for(rules_for(terms, BASE, GUILD, cache=cache), 60)
    assert time.monotonic() - started < 10  # a generous ceiling; compiling it took minutes
    assert blocked(rules, "a sad clown")  # the guild's other entries stand
    assert not blocked(rules, "a" * 200)
    assert [pattern.written for pattern in rules.patterns] == []
    skipped = [record.getMessage() for record in caplog.records]
    assert len(skipped) == 2
    assert "guild 5" in skipped[0]
    assert "'a{1000000000}' repeats 1000000000 times" in skipped[0]
    assert "'(?:ab){5000000}' repeats 5000000 times" in skipped[1]

    # Said once when the rules are built, not at every check.
    await rules_for(terms, BASE, GUILD, cache=cache)
    assert len(caplog.records) == 2


async def test_the_event_loop_runs_while_a_guilds_rules_are_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The build waits for a go that only the event loop can give: built on the loop, it would
    # wait for nothing and fail after the ceiling; built off the loop, the loop gives it.
    fresh = uuid.uuid4().hex[:6]
    entries = tuple(
        GuildRule(RuleAction.BLOCK, rf"(?:[ab]{{90}}{fresh}{number}){{98}}", is_regex=True)
        for number in range(60)
    )
    loop = asyncio.get_running_loop()
    started = asyncio.Event()
    go = threading.Event()
    built_in: list[int] = []
    original = guild_rules.build_rules

    def build_when_the_loop_says_go(*args: Any) -> PromptRules:
        built_in.append(threading.get_ident())
        loop.call_soon_threadsafe(started.set)
        if not go.wait(timeout=60):
            raise AssertionError("the event loop did not run while the rules were built")
        return original(*args)

    monkeypatch.setattr(guild_rules, "build_rules", build_when_the_loop_says_go)
    cache = GuildRulesCache(BASE)
    building = asyncio.create_task(cache.rules(entries))
    await started.wait()  # the build has started (in its thread) ...
    go.set()  # ... and the loop still runs: it says go
    rules = await building
    assert built_in[0] != threading.get_ident()
    assert len(rules.patterns) == 60


async def test_guild_entries_are_read_in_the_order_they_were_added(
    sessions: SessionFactory,
) -> None:
    terms = TermList(sessions)
    await terms.add(GUILD, TermKind.FORCE_SAFE, "beach")
    await terms.add(None, TermKind.BLOCK, "clown")
    assert await guild_entries(terms, GUILD) == (
        GuildRule(RuleAction.FORCE_SAFE, "beach"),
        GuildRule(RuleAction.BLOCK, "clown"),
    )
