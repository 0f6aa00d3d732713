"""A guild's rules, compiled off the event loop and kept for as long as its entries stay the same.

The key is the entries themselves, as read from the database for each request: adding,
removing or expiring an entry changes the key, whichever process made the change (the bot, a
shard, ``sdbot terms`` in a shell), so nothing has to be told to forget anything. Building a
guild's rules copies the shipped lists and compiles its patterns (tens of milliseconds, more
with many patterns); that runs in a thread, and concurrent requests for the same entries wait
for one build.

Entries that are no longer valid (stored before a stricter check, such as the bounds on counted
repeats) are left out with a warning when the rules are built, once, not at every check.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence

from moderation.errors import InvalidTerm
from moderation.lists import GuildRule, PromptRules

log = logging.getLogger(__name__)

Entries = tuple[GuildRule, ...]


class GuildRulesCache:
    """The shipped rules plus one set of guild entries, built at most once per set of entries
    while it is among the ``size`` most recently used."""

    def __init__(self, base: PromptRules, *, size: int = 256) -> None:
        self.base = base
        self.size = size
        self.builds = 0  # sets of entries built so far (each compiles their patterns once)
        self._built: OrderedDict[Entries, PromptRules] = OrderedDict()
        self._building: dict[Entries, asyncio.Task[PromptRules]] = {}

    async def rules(
        self, entries: Sequence[GuildRule], *, guild_id: int | None = None
    ) -> PromptRules:
        """The rules for these entries; ``guild_id`` only names the guild in warnings."""
        key = tuple(entries)
        if not key:
            return self.base
        built = self._built.get(key)
        if built is not None:
            self._built.move_to_end(key)
            return built
        task = self._building.get(key)
        if task is None:
            task = asyncio.create_task(self._build(key, guild_id))
            self._building[key] = task
        # A request cancelled while it waits leaves the build running for the others.
        return await asyncio.shield(task)

    async def _build(self, key: Entries, guild_id: int | None) -> PromptRules:
        try:
            rules = await asyncio.to_thread(build_rules, self.base, key, guild_id)
        finally:
            del self._building[key]
        self.builds += 1
        self._built[key] = rules
        while len(self._built) > self.size:
            self._built.popitem(last=False)
        return rules


def build_rules(
    base: PromptRules, entries: Sequence[GuildRule], guild_id: int | None
) -> PromptRules:
    """``base`` plus stored entries (validated when they were stored, so not probed again);
    an entry that fails today's checks is left out, with a warning naming it and why."""

    def skip(rule: GuildRule, error: InvalidTerm) -> None:
        log.warning("skipped list entry ◆ guild %s ◆ %s ◆ %s", guild_id, rule.action, error)

    return base.with_guild(entries, probe=False, skip_invalid=skip)
