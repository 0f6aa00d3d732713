"""Discord's metrics from the real discord.py client on the fake Discord, with the real worker
process and the embedded model: the ack latency and the posting stage move with an /imagine,
a first answer Discord refuses as too late is timed and counted as expired, and a failed call is
counted by its route template and status, never by its ids or a token."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY, generate_latest

from bot.discord.client import ImagineBot
from fake_discord import Channel, FakeDiscord, Guild, User

World = tuple[Guild, Channel, User]
ADD_REACTION = "PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
EDIT_ORIGINAL = "PATCH /webhooks/{application_id}/{token}/messages/{message_id}"
CALLBACK = "POST /interactions/{interaction_id}/{token}/callback"


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _errors(method: str, route: str, status: str) -> float:
    return _value("sdbot_discord_api_errors_total", method=method, route=route, status=status)


async def test_imagine_moves_the_ack_and_posting_and_counts_failed_calls_by_template(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    guild, channel, ada = world
    acks = _value("sdbot_discord_ack_seconds_count")
    postings = _value("sdbot_stage_seconds_count", stage="posting")
    reaction_route = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
    edit_route = "/webhooks/{webhook_id}/{webhook_token}/messages/@original"
    refused = _errors("PUT", reaction_route, "403")
    unanswered = _errors("PATCH", edit_route, "0")
    # The first control cannot be added (no permission: not retried, the post stands without
    # controls); the first progress edit loses its connection (skipped, the job goes on).
    fake_discord.fail(ADD_REACTION, status=403)
    fake_discord.drop(EDIT_ORIGINAL, phase="request")

    interaction = await fake_discord.slash(ada, channel, "imagine", prompt="a red circle", seed=3)
    await fake_discord.wait_for(
        lambda: interaction.original is not None and interaction.original.attachments, within=120
    )
    await fake_discord.wait_for(
        lambda: _value("sdbot_stage_seconds_count", stage="posting") > postings, within=60
    )

    assert _value("sdbot_discord_ack_seconds_count") == acks + 1  # the defer, once
    assert _value("sdbot_stage_seconds_count", stage="posting") == postings + 1
    assert _errors("PUT", reaction_route, "403") == refused + 1
    assert _errors("PATCH", edit_route, "0") == unanswered + 1

    # No id, interaction token or bot token anywhere in what Prometheus reads.
    exposition = generate_latest(REGISTRY).decode()
    secrets = [fake_discord.token, interaction.token]
    ids = [guild.id, channel.id, ada.id, interaction.id, bot.user and bot.user.id]
    ids += [message.id for message in interaction.messages]
    for value in [*secrets, *(str(i) for i in ids if i)]:
        assert value not in exposition, value
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name.startswith("sdbot_"):
                for label in sample.labels.values():
                    assert not re.search(r"\d{6,}", label), (sample.name, sample.labels)


async def test_a_first_answer_refused_as_too_late_is_timed_and_counted_as_expired(
    fake_discord: FakeDiscord, bot: ImagineBot, world: World
) -> None:
    """The fake answers /help's callback late, past Discord's 3 s: 404, code 10062. That
    interaction is what the ack histogram exists for, so it lands in it, above 2.5 s (the
    fake refuses only after its 3 s), and in the expired counter, once."""
    _, channel, ada = world
    acks = _value("sdbot_discord_ack_seconds_count")
    quick = _value("sdbot_discord_ack_seconds_bucket", le="2.5")
    expired = _value("sdbot_discord_acks_expired_total")
    refused = _errors("POST", "/interactions/{webhook_id}/{webhook_token}/callback", "404")
    fake_discord.slow(CALLBACK, seconds=fake_discord.ack_deadline_s + 0.5)

    interaction = await fake_discord.slash(ada, channel, "help")
    await fake_discord.wait_for(lambda: _value("sdbot_discord_ack_seconds_count") > acks, within=60)
    assert interaction.expired_ack
    assert not interaction.responded
    assert _value("sdbot_discord_ack_seconds_count") == acks + 1
    assert _value("sdbot_discord_ack_seconds_bucket", le="2.5") == quick  # a slow one
    assert _value("sdbot_discord_acks_expired_total") == expired + 1
    # The bot's error handler tries to answer again, refused too: an API error, no second ack.
    assert _errors("POST", "/interactions/{webhook_id}/{webhook_token}/callback", "404") > refused


def test_an_id_formatted_into_a_route_reads_as_a_placeholder() -> None:
    from discord.http import Route

    from bot.discord.metrics import template

    # discord.py formats the guild into this one path itself (http.py, edit_guild_onboarding).
    onboarding = Route("PUT", f"/guilds/{1234567890123456789}/onboarding")
    assert template(onboarding) == "/guilds/{id}/onboarding"
    kept = Route("GET", "/channels/{channel_id}/messages/{message_id}", channel_id=1, message_id=2)
    assert template(kept) == "/channels/{channel_id}/messages/{message_id}"
