"""The record of a request refused at the edge for what the database cannot hold.

A prompt with invalid UTF-8 or a NUL character, or a guild id beyond 64 bits, never reaches the
service; it is still a request someone made, so it gets an audit record (status ``refused``),
with the text escaped so that every database can store it and the guild left out. Its verdict
is the one admission would give: both readings of the prompt, then the guild's gore policy in the
channel it names.
"""

from __future__ import annotations

import dataclasses

from bot.app import open_storage
from bot.imagine.admission import judge_request
from bot.imagine.records import new_job
from bot.imagine.rules import negative_moved, rules_for
from bot.imagine.types import Requester
from bot.settings import Settings
from generation.options import RequestedOptions, storable
from moderation.lists import PromptRules


async def record_refusal(
    settings: Settings,
    requested: RequestedOptions,
    reason: str,
    *,
    guild_id: int | None,
    channel_nsfw: bool,
) -> int:
    """Records the refused request and returns its job id. Options that are invalid for another
    reason raise InvalidOption first, as they would for any request (no record)."""
    escaped = dataclasses.replace(
        requested,
        prompt=storable(requested.prompt),
        negative_prompt=storable(requested.negative_prompt),
    )
    catalog = settings.catalog()
    options = catalog.validate(escaped, settings.catalog_limits())
    async with open_storage(settings) as storage:
        here = None if guild_id is None else await storage.guild_settings.get(guild_id)
        rules = await rules_for(storage.terms, PromptRules.default(), guild_id)
        options = negative_moved(options, rules, settings.catalog_limits())
        verdict = judge_request(options, rules, here, channel_nsfw)
        requester = Requester(source="cli", guild_id=guild_id, channel_nsfw=channel_nsfw)
        model = options.model or catalog.default_model
        return await storage.audit.create_job(
            new_job(requester, options, verdict, model), refused=reason
        )
