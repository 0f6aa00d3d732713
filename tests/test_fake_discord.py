"""The fake Discord against the real, unmodified discord.py client: login, command sync, slash
commands, responses and followups with files, reactions, edits, deletions, DMs, Discord's rules
and error codes, faults (429, 5xx, slow answers, dropped gateway, invalid session, silent
heartbeats, refused connects) and a load scenario.

The client here is a small probe built only from discord.py, so that these tests pin down the
fake itself; the bot's own tests drive bot/ against the same fake.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest

from bot.discord import endpoints
from bot.discord.endpoints import Endpoints
from fake_discord import Channel, FakeDiscord, Guild, Overwrite, Permission, Upload, User
from fake_discord.client import running, start_client
from fake_discord.load import run_load
from fake_discord.probe import ProbeBot, png
from fake_discord.ratelimit import Limit


@pytest.fixture
def fake(fake_discord: FakeDiscord) -> FakeDiscord:
    return fake_discord


@pytest.fixture
def world(fake: FakeDiscord) -> tuple[Guild, Channel, User]:
    guild = fake.create_guild("art club")
    channel = fake.create_channel(guild, "images")
    member = fake.create_user("ada")
    fake.add_member(guild, member)
    return guild, channel, member


@pytest.fixture
async def bot(fake: FakeDiscord, world: tuple[Guild, Channel, User]) -> AsyncIterator[ProbeBot]:
    async with running(fake, ProbeBot()) as client:
        yield client


async def test_login_and_one_command_end_to_end(world: tuple[Guild, Channel, User]) -> None:
    guild, channel, ada = world
    started = time.perf_counter()
    server = await FakeDiscord().start()
    # The same world, on a fresh fake, timed from nothing to the answer.
    g = server.create_guild("art club")
    c = server.create_channel(g, "images")
    before = endpoints.use(Endpoints(server.api_url, server.gateway_url))
    client = ProbeBot()
    task = None
    try:
        task = await start_client(server, client)
        interaction = await server.slash(ada, c, "echo", text="@everyone hi", times=2)
        message = await server.wait_for(lambda: interaction.followups and interaction.followups[0])
        elapsed = time.perf_counter() - started
        assert message.content == "@everyone hi @everyone hi"
        assert message.allowed_mentions == {"parse": []}  # echoed text pings no one
        assert interaction.response_type == 5  # deferred ("thinking"), then the followup
        assert not message.flags & message.LOADING
        print(f"login + sync + one command: {elapsed * 1000:.0f} ms")  # goal < 2 s (bench)
        routes = [call.route for call in server.calls]
        assert routes[:3] == [
            "GET /users/@me",
            "GET /oauth2/applications/@me",
            "PUT /applications/{application_id}/commands",
        ]
        assert routes[-2:] == [
            "POST /interactions/{interaction_id}/{token}/callback",
            "POST /webhooks/{application_id}/{token}",
        ]
    finally:
        await client.close()
        if task is not None:
            await asyncio.wait_for(task, 60)
        endpoints.use(before)
        await server.close()
    server.check()
    assert {guild.name, channel.name} == {"art club", "images"}


async def test_files_reactions_and_their_order(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    interaction = await fake.slash(ada, channel, "picture")
    message = await fake.wait_for(
        lambda: next((m for m in interaction.messages if len(m.reacted) == 3), None)
    )
    [attachment] = message.attachments
    assert attachment.filename == "grid.png"
    assert attachment.image().size == (64, 64)
    assert message.reacted == ["1️⃣", "🔄", "❌"]
    routes = [call.route.split(" ", 1)[1] for call in fake.calls if call.ok][-5:]
    assert routes == [
        "/interactions/{interaction_id}/{token}/callback",
        "/webhooks/{application_id}/{token}",
        *["/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"] * 3,
    ]
    # The attachment is served where its URL says.
    async with aiohttp.ClientSession() as session, session.get(attachment.url) as response:
        assert await response.read() == attachment.data

    # A member's reaction reaches the bot, which removes it; ❌ deletes the post.
    await fake.add_reaction(ada, message, "🔄")
    await fake.wait_for(lambda: message.reactions["🔄"] == [fake.bot_user.id])
    assert [str(r.emoji) for r in bot.reactions] == ["🔄"]
    # Removals are events too: the bot's removal of ada's 🔄, and ada taking one back.
    fake.react(ada.id, message, "⭐", dispatch=False)
    await fake.remove_reaction(ada, message, "⭐")
    await fake.wait_for(lambda: len(bot.removed) == 2)
    assert [(str(r.emoji), r.user_id) for r in bot.removed] == [("🔄", ada.id), ("⭐", ada.id)]
    await fake.add_reaction(ada, message, "❌")
    await fake.wait_for(lambda: message.deleted)


async def test_members_roles_and_channels_reach_the_client(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    guild, channel, ada = world
    admin = fake.create_user("grace")
    fake.add_member(guild, admin, [fake.create_role(guild, "mods", Permission.MANAGE_GUILD)])
    after_dark = fake.create_channel(guild, "after-dark", nsfw=True)
    answers = []
    for user, where in ((ada, channel), (admin, after_dark)):
        interaction = await fake.slash(user, where, "whoami")
        await fake.wait_for(lambda i=interaction: i.original)  # type: ignore[misc]
        assert interaction.original is not None
        answers.append(interaction.original.content)
    assert answers == ["manage_guild=False nsfw=False", "manage_guild=True nsfw=True"]

    fake.set_roles(guild, ada, [fake.create_role(guild, "artists", 0)])  # after READY
    banned = await fake.slash(admin, channel, "mod ban", member=ada, days=7, reason="spam")
    await fake.wait_for(lambda: banned.original)
    assert banned.original is not None
    assert banned.original.content == "banned ada (artists) for 7d: spam"

    # What Discord's own client would never send.
    with pytest.raises(PermissionError, match="Discord does not show /mod to ada"):
        await fake.slash(ada, channel, "mod ban", member=admin)
    with pytest.raises(ValueError, match=r"range 1\.\.30"):
        await fake.slash(admin, channel, "mod ban", member=ada, days=99)
    with pytest.raises(ValueError, match=r"without \['member'\]"):
        await fake.slash(admin, channel, "mod ban", days=2)
    # ...unless a test asks for it, as a modified client could.
    odd = await fake.slash(admin, channel, "mod ban", member=ada, days=99, checked=False)
    await fake.wait_for(lambda: odd.responded)


async def test_ephemeral_edit_delete_and_dm(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    secret = await fake.slash(ada, channel, "secret")
    await fake.wait_for(lambda: secret.original)
    assert secret.original is not None
    assert (secret.original.ephemeral, secret.ephemeral) == (True, True)
    # Only its interaction can reach an ephemeral message; channel routes cannot.
    status, body = await _rest(fake, "GET", f"/channels/{channel.id}/messages/{secret.original.id}")
    assert (status, body["code"]) == (404, 10008)

    churn = await fake.slash(ada, channel, "churn")
    await fake.wait_for(lambda: churn.original is not None and churn.original.deleted)
    assert churn.original is not None
    assert (churn.original.content, churn.original.edits) == ("second", 1)

    dm = await fake.slash(ada, channel, "dm")
    dm_channel = fake.dm_channel(ada)
    [message] = await fake.wait_for(lambda: fake.channel_messages(dm_channel))
    assert message.content == "hello in private"
    assert dm.ephemeral


async def test_the_first_response_deadline(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    late = await fake.slash(ada, channel, "late")
    await fake.wait_for(lambda: bot.errors)
    [error] = bot.errors
    assert isinstance(error, discord.NotFound)
    assert (error.status, error.code) == (404, 10062)
    assert late.expired_ack
    assert not late.responded


async def _post(url: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return response.status, await response.json(content_type=None)


async def test_one_acknowledgement_and_the_token_lifetime(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    interaction = await fake.slash(ada, channel, "secret")
    await asyncio.wait_for(interaction.acknowledged.wait(), 60)
    callback = f"{fake.api_url}/interactions/{interaction.id}/{interaction.token}/callback"
    status, body = await _post(callback, {"type": 4, "data": {"content": "again"}})
    assert (status, body["code"]) == (400, 40060)

    webhook = f"{fake.api_url}/webhooks/{fake.application_id}/{interaction.token}"
    assert (await _post(webhook, {"content": "still in time"}))[0] == 200
    fake.advance(15 * 60 + 1)
    status, body = await _post(webhook, {"content": "too late"})
    assert (status, body["code"]) == (401, 50027)


@pytest.mark.parametrize(
    ("command", "options", "status", "code"),
    [
        ("big", {"megabytes": 11}, 413, 40005),  # over the 10 MiB attachment limit
        ("long", {"length": 2001}, 400, 50035),
        ("long", {"length": 0}, 400, 50006),  # empty
    ],
)
async def test_message_limits(
    fake: FakeDiscord,
    bot: ProbeBot,
    world: tuple[Guild, Channel, User],
    command: str,
    options: dict[str, int],
    status: int,
    code: int,
) -> None:
    _, channel, ada = world
    await fake.slash(ada, channel, command, **options)
    await fake.wait_for(lambda: bot.errors)
    assert [(e.status, e.code) for e in bot.errors] == [(status, code)]


async def test_a_bigger_attachment_limit_is_honoured(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    interaction = await fake.slash(
        ada, channel, "big", megabytes=11, attachment_size_limit=25 * 1024 * 1024
    )
    await fake.wait_for(lambda: interaction.followups)
    assert bot.errors == []


async def test_permissions_are_checked(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    guild, _, ada = world
    read_only = fake.create_channel(
        guild,
        "announcements",
        overwrites=[Overwrite(guild.id, 0, deny=Permission.SEND_MESSAGES)],
    )
    await fake.slash(ada, read_only, "say", text="hello")
    await fake.wait_for(lambda: bot.errors)
    assert [(e.status, e.code) for e in bot.errors] == [(403, 50013)]
    # Interaction responses need no channel permission; the channel message was refused.
    assert [m.content for m in fake.channel_messages(read_only)] == ["ok"]
    assert fake.channel_messages(read_only)[0].ephemeral


async def test_rate_limits_and_server_errors_are_retried(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    reaction_route = "PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
    fake.rate_limit(reaction_route, retry_after=0.3)
    fake.rate_limit("POST /webhooks/{application_id}/{token}", retry_after=0.2)
    fake.rate_limit("POST /channels/{channel_id}/messages", retry_after=0.2, is_global=True)
    fake.fail("POST /webhooks/{application_id}/{token}", status=502)
    fake.slow("POST /interactions/{interaction_id}/{token}/callback", seconds=0.5)
    interaction = await fake.slash(ada, channel, "picture")
    message = await fake.wait_for(
        lambda: next((m for m in interaction.messages if len(m.reacted) == 3), None)
    )
    assert message.reacted == ["1️⃣", "🔄", "❌"]
    statuses = [call.status for call in fake.calls_to("POST /webhooks")]
    assert statuses == [429, 502, 200]
    assert [call.status for call in fake.calls_to(reaction_route)] == [429, 204, 204, 204]
    # A global 429 on a channel message is waited out too.
    await fake.slash(ada, channel, "say", text="after the limit")
    posts = "POST /channels/{channel_id}/messages"
    await fake.wait_for(lambda: any(call.ok for call in fake.calls_to(posts)))
    statuses = [call.status for call in fake.calls_to("POST /channels/{channel_id}/messages")]
    assert statuses == [429, 200]
    assert bot.errors == []


async def test_gateway_drop_is_resumed_and_missed_events_replayed(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    await fake.gateway.drop()
    # Sent while the bot is away: kept, replayed after RESUME and before RESUMED.
    interaction = await fake.slash(ada, channel, "secret")
    await asyncio.wait_for(interaction.acknowledged.wait(), 60)
    session = fake.gateway.session
    assert session is not None
    assert (session.resumes, session.identifies) == (1, 1)
    order = [event["t"] for event in session.events]
    assert order.index("INTERACTION_CREATE") < order.index("RESUMED")


async def test_op7_reconnect_is_resumed(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    await fake.gateway.request_reconnect()
    interaction = await fake.slash(ada, channel, "secret")
    await asyncio.wait_for(interaction.acknowledged.wait(), 60)
    assert fake.gateway.session is not None
    assert fake.gateway.session.resumes == 1


class QuickIdentifyBot(ProbeBot):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every IDENTIFY but the first; not in this test."""


async def test_invalid_session_makes_the_client_identify_again(
    fake: FakeDiscord, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    async with running(fake, QuickIdentifyBot()):
        first = fake.gateway.session
        await fake.gateway.invalidate()
        await fake.wait_for(
            lambda: fake.gateway.session is not first and fake.gateway.connected.is_set(),
        )
        assert fake.gateway.session is not None
        assert fake.gateway.session.identifies == 2
        interaction = await fake.slash(ada, channel, "secret")
        await asyncio.wait_for(interaction.acknowledged.wait(), 60)


async def test_silent_heartbeats_make_the_client_reconnect(
    fake: FakeDiscord, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    fake.gateway.heartbeat_interval_ms = 200
    async with running(fake, ProbeBot(heartbeat_timeout=1.0)):
        fake.gateway.ack_heartbeats = False  # and nothing else arrives either
        await fake.wait_for(
            lambda: fake.gateway.session is not None and fake.gateway.session.resumes >= 1,
        )
        fake.gateway.ack_heartbeats = True
        interaction = await fake.slash(ada, channel, "secret")
        await asyncio.wait_for(interaction.acknowledged.wait(), 60)


async def test_a_refused_first_connect_stops_the_client(
    fake: FakeDiscord, world: tuple[Guild, Channel, User]
) -> None:
    """discord.py does not retry a failing first gateway connect (Rapptz/discord.py#10520):
    `start` ends with an error, so `sdbot run` must restart the client itself."""
    fake.gateway.refuse_connects = 1
    client = ProbeBot()
    failure: BaseException | None = None
    try:
        await asyncio.wait_for(client.start(fake.token), 60)
    except TimeoutError:
        pytest.fail("discord.py kept retrying: the runner's restart may no longer be needed")
    except Exception as error:  # an AttributeError in discord.py 2.7.1
        failure = error
    finally:
        await client.close()
    assert failure is not None, "start() returned after a refused connect"
    assert fake.gateway.connects == 1
    async with running(fake, ProbeBot()):
        assert fake.gateway.connects == 2


async def test_unknown_commands_and_options_fail_loudly(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    with pytest.raises(LookupError, match="no application command 'nope' was synced"):
        await fake.slash(ada, channel, "nope")
    with pytest.raises(LookupError, match="'echo' has no option 'colour'"):
        await fake.slash(ada, channel, "echo", colour="red")


async def test_a_members_file_in_an_attachment_option_as_discord_sends_it(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    picture = png(48)
    interaction = await fake.slash(
        ada, channel, "look", picture=Upload("cat.png", picture),
        other=Upload("notes.txt", b"hello"),
    )  # fmt: skip
    message = await fake.wait_for(lambda: interaction.original, within=30)
    assert message.ephemeral
    # discord.py read the resolved attachments and downloaded both files from the fake's CDN.
    assert message.content.splitlines() == [
        f"cat.png {len(picture)} {len(picture)} image/png 48x48 ephemeral=True",
        "notes.txt 5 5 text/plain NonexNone ephemeral=True",
    ]
    [cat, notes] = [c.path for c in fake.downloads]
    assert cat.startswith("/cdn/ephemeral-attachments/")
    assert cat.endswith("/cat.png")
    assert notes.endswith("/notes.txt")
    assert all(c.status == 200 for c in fake.downloads)
    # The payload as Discord sends it: the option's value is the attachment's id, the file is
    # in data.resolved.attachments with its size, type, URL and picture size.
    [stored] = [a for a in fake.uploads.values() if a.filename == "cat.png"]
    assert stored.to_json() | {"url": "", "proxy_url": ""} == {
        "id": str(stored.id), "filename": "cat.png", "size": len(picture), "url": "",
        "proxy_url": "", "content_type": "image/png", "width": 48, "height": 48,
        "ephemeral": True,
    }  # fmt: skip


async def test_a_followup_after_the_deferred_response_is_deleted_is_its_own_message(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    interaction = await fake.slash(ada, channel, "retract")
    answer = await fake.wait_for(lambda: interaction.followups and interaction.followups[0])
    assert interaction.messages == [answer]
    assert interaction.response_type == 5
    assert not interaction.ephemeral  # the "thinking…" was public
    assert interaction.original is not None
    assert interaction.original.deleted
    assert (answer.content, answer.ephemeral) == ("only you, after all", True)


async def test_attachment_options_take_files_only_and_within_the_upload_limit(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    # Discord resolves the files its client uploaded: an attachment option has no other value,
    # and a file goes in no other option, whatever a modified client sends.
    for checked in (True, False):
        with pytest.raises(ValueError, match="picture=str: an attachment option takes"):
            await fake.slash(ada, channel, "look", picture="cat.png", checked=checked)
        with pytest.raises(ValueError, match="text=Upload"):
            await fake.slash(ada, channel, "echo", text=Upload("a.png", png()), checked=checked)
    with pytest.raises(ValueError, match="without"):
        await fake.slash(ada, channel, "look")
    fake.upload_limit = 1000
    with pytest.raises(
        ValueError, match=r"does not upload big\.png of 2000 bytes: the limit is 1000"
    ):
        await fake.slash(ada, channel, "look", picture=Upload("big.png", b"x" * 2000))
    assert fake.uploads == {}
    # An unknown file on the CDN is a 404, recorded like every download.
    async with aiohttp.ClientSession() as session:
        url = f"{fake.url}/cdn/ephemeral-attachments/1/2/gone.png"
        async with session.get(url) as response:
            assert response.status == 404
    assert [(c.path, c.status) for c in fake.downloads] == [
        ("/cdn/ephemeral-attachments/1/2/gone.png", 404)
    ]


async def test_load_scenario_records_every_acknowledgement(
    fake: FakeDiscord, bot: ProbeBot
) -> None:
    report = await run_load(
        fake, guilds=3, users_per_guild=4, seconds=1.5, command="echo", text="hi"
    )
    summary = report.summary()
    print(f"load: {summary}")  # figures go to the note and the bench, not into asserts
    assert summary["interactions"] >= 12
    assert report.unanswered == []
    assert len(report.latencies) == summary["interactions"]
    await fake.wait_for(lambda: all(i.followups for i in report.interactions))


async def _rest(
    fake: FakeDiscord, method: str, path: str, *, token: bool = True, **kwargs: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {fake.token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.api_url + path, headers=headers, **kwargs) as response,
    ):
        return response.status, await response.json(
            content_type=None
        ) if response.status != 204 else None


async def test_rest_rules_without_the_client(
    fake: FakeDiscord, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, _ = world
    messages = f"/channels/{channel.id}/messages"
    assert (await _rest(fake, "POST", messages, json={"content": "hi"}))[0] == 200
    assert (await _rest(fake, "POST", messages, token=False, json={"content": "hi"}))[0] == 401
    status, body = await _rest(fake, "POST", messages, json={"embeds": [{"title": "x"}] * 11})
    assert (status, body["code"]) == (400, 50035)
    form = aiohttp.FormData()
    form.add_field("payload_json", '{"content": "files"}', content_type="application/json")
    for n in range(11):
        form.add_field(f"files[{n}]", png(8), filename=f"{n}.png", content_type="image/png")
    status, body = await _rest(fake, "POST", messages, data=form)
    assert (status, body["code"]) == (400, 50035)
    assert (await _rest(fake, "GET", "/channels/1/messages/2"))[1]["code"] == 10003

    # History, reaction users and clearing them, users, closed DMs, command size.
    _, first = await _rest(fake, "POST", messages, json={"content": "react here"})
    message = fake.messages[int(first["id"])]
    ada = fake.create_user("ada")
    fake.react(ada.id, message, "⭐", dispatch=False)
    status, history = await _rest(fake, "GET", messages, params={"limit": "1"})
    assert (status, [m["content"] for m in history]) == (200, ["react here"])
    reacted = f"{messages}/{message.id}/reactions"
    assert [u["username"] for u in (await _rest(fake, "GET", f"{reacted}/⭐"))[1]] == ["ada"]
    assert (await _rest(fake, "DELETE", reacted))[0] == 204
    assert message.reacted == []
    assert (await _rest(fake, "GET", f"/users/{ada.id}"))[1]["username"] == "ada"
    ada.dms_open = False
    dm = fake.dm_channel(ada)
    status, body = await _rest(fake, "POST", f"/channels/{dm.id}/messages", json={"content": "hi"})
    assert (status, body["code"]) == (403, 50007)
    too_many = {"name": "big", "description": "d", "options": [
        {"name": f"o{n}", "description": "d", "type": 3} for n in range(26)
    ]}  # fmt: skip
    status, body = await _rest(
        fake, "PUT", f"/applications/{fake.application_id}/commands", json=[too_many]
    )
    assert (status, body["code"]) == (400, 50035)
    status, body = await _rest(fake, "GET", "/guilds/1/bans")
    assert status == 404
    assert [call.route for call in fake.unhandled] == ["GET /guilds/1/bans"]
    fake.unhandled.clear()  # recorded on purpose here


# --- threads, DMs, rate limits, compression, connection faults, message age ----------------------


async def test_threads_take_the_parents_rules(
    fake: FakeDiscord, world: tuple[Guild, Channel, User]
) -> None:
    guild, _, ada = world
    after_dark = fake.create_channel(guild, "after-dark", nsfw=True)
    known = fake.create_thread(after_dark, "before login")  # reaches the client in GUILD_CREATE
    async with running(fake, ProbeBot()) as client:
        assert isinstance(client.get_channel(known.id), discord.Thread)
        wip = fake.create_thread(after_dark, "wip", owner=ada)  # THREAD_CREATE
        thread = await fake.wait_for(lambda: client.get_channel(wip.id))
        assert isinstance(thread, discord.Thread)
        assert (thread.parent_id, thread.owner_id) == (after_dark.id, ada.id)

        # Interactions from a thread carry the thread, with its parent, as Discord sends them.
        where = await fake.slash(ada, wip, "where")
        await fake.wait_for(lambda: where.original)
        assert where.original is not None
        assert where.original.content == f"public_thread parent={after_dark.id} nsfw=True"
        assert where.channel_id == wip.id

        said = await fake.slash(ada, wip, "say", text="in the thread")
        posted = await fake.wait_for(
            lambda: [m.content for m in fake.channel_messages(wip) if not m.ephemeral]
        )
        assert posted == ["in the thread"]
        assert said.responded
        assert client.errors == []

        # Send Messages in Threads, not Send Messages, decides; the parent's overwrites count.
        quiet = fake.create_channel(
            guild,
            "no-threads",
            overwrites=[Overwrite(guild.id, 0, deny=Permission.SEND_MESSAGES_IN_THREADS)],
        )
        closed = fake.create_thread(quiet, "read only")
        await fake.wait_for(lambda: client.get_channel(closed.id))
        await fake.slash(ada, quiet, "say", text="in the channel: fine")
        await fake.slash(ada, closed, "say", text="in its thread: refused")
        await fake.wait_for(lambda: client.errors)
        assert [(e.status, e.code) for e in client.errors] == [(403, 50013)]
        assert fake.channel_messages(quiet)[-1].content == "in the channel: fine"
    with pytest.raises(ValueError, match="a thread starts in a guild text channel"):
        fake.create_thread(wip, "nested")


async def test_others_reactions_cannot_be_removed_in_a_dm(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    await fake.slash(ada, channel, "dm")
    dm = fake.dm_channel(ada)
    [message] = await fake.wait_for(lambda: fake.channel_messages(dm))
    await fake.add_reaction(ada, message, "🔄")  # the probe removes others' reactions
    await fake.wait_for(lambda: bot.errors)
    [error] = bot.errors
    assert (error.status, error.code) == (403, 50003)
    assert error.text == "Cannot execute action on a DM channel"
    assert message.reactions["🔄"] == [ada.id]
    # Clearing them, or deleting someone else's message there, is refused the same way.
    path = f"/channels/{dm.id}/messages/{message.id}/reactions"
    assert (await _rest(fake, "DELETE", path))[1]["code"] == 50003


async def test_rate_limit_headers_and_refusals(
    fake: FakeDiscord, world: tuple[Guild, Channel, User]
) -> None:
    """Discord's buckets by default (5 channel messages per 5 s per channel), truthful headers,
    then the 429 that discord.py retries; a test can tighten or loosen any of it."""
    guild, channel, _ = world
    messages = f"/channels/{channel.id}/messages"
    headers = []
    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bot {fake.token}"}
        for n in range(6):
            async with session.post(
                fake.api_url + messages, headers=auth, json={"content": str(n)}
            ) as response:
                headers.append((response.status, response.headers, await response.json()))
    assert [status for status, _, _ in headers] == [200] * 5 + [429]
    assert [h["X-RateLimit-Remaining"] for _, h, _ in headers[:5]] == ["4", "3", "2", "1", "0"]
    assert {h["X-RateLimit-Limit"] for _, h, _ in headers} == {"5"}
    assert len({h["X-RateLimit-Bucket"] for _, h, _ in headers}) == 1
    assert 4.5 < float(headers[0][1]["X-RateLimit-Reset-After"]) <= 5.0
    _, refused, body = headers[5]
    assert refused["X-RateLimit-Scope"] == "user"
    assert refused["Via"]  # without it discord.py takes a 429 for a Cloudflare ban
    assert 4 < body["retry_after"] <= 5.0
    assert body["global"] is False
    assert float(refused["X-RateLimit-Reset-After"]) == body["retry_after"]
    assert [c.status for c in fake.calls_to("POST /channels")] == [200] * 5 + [429]
    # Another channel is another bucket.
    other = fake.create_channel(guild, "other")
    assert (await _rest(fake, "POST", f"/channels/{other.id}/messages", json={"content": "x"}))[
        0
    ] == 200

    # The global limit: 50 a second per token by default, here 3 per 0.5 s; interaction
    # routes are not under it.
    fake.limits.relax()
    fake.limits.global_limit = Limit(3, 0.5, "global")
    for _ in range(3):
        assert (await _rest(fake, "GET", f"/channels/{channel.id}"))[0] == 200
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{fake.api_url}/channels/{channel.id}", headers={"Authorization": f"Bot {fake.token}"}
        ) as response,
    ):
        body = await response.json()
        assert response.status == 429
        assert response.headers["X-RateLimit-Global"] == "true"
        assert response.headers["X-RateLimit-Scope"] == "global"
        assert body["global"] is True
        assert 0 < body["retry_after"] <= 0.5
    webhook = f"{fake.api_url}/webhooks/{fake.application_id}/no-such-token"
    assert (await _post(webhook, {"content": "x"}))[0] == 404  # answered, not limited
    with pytest.raises(ValueError, match="limit >= 1"):
        Limit(0, 1.0)


async def test_discord_py_waits_on_the_headers_instead_of_hitting_429(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    edit = "PATCH /channels/{channel_id}/messages/{message_id}"
    fake.limits.routes[edit] = Limit(2, 0.4, "message-edit")  # tighter than Discord's 5 per 5 s
    started = time.perf_counter()
    await fake.slash(ada, channel, "burst", edits=6)
    post = await fake.wait_for(lambda: fake.channel_messages(channel)[1:])
    await fake.wait_for(lambda: post[0].content == "6")
    edits = fake.calls_to(edit)
    assert [call.status for call in edits] == [200] * 6  # no 429: the client waited
    assert edits[-1].at - edits[0].at >= 2 * 0.4  # three windows of two edits
    assert time.perf_counter() - started < 30
    assert fake.limits.refused == 0
    assert bot.errors == []

    # Reactions: one per 0.25 s per channel, so the three controls take two waits.
    interaction = await fake.slash(ada, channel, "picture")
    await fake.wait_for(lambda: any(len(m.reacted) == 3 for m in interaction.messages))
    reactions = fake.calls_to("PUT /channels/{channel_id}/messages/{message_id}/reactions")
    assert [call.status for call in reactions] == [204] * 3
    gaps = [b.at - a.at for a, b in itertools.pairwise(reactions)]
    assert min(gaps) >= 0.24, gaps

    # A global 429 is waited out by every route of the client.
    fake.limits.relax()
    fake.limits.global_limit = Limit(2, 0.5, "global")
    await fake.slash(ada, channel, "burst", edits=4)
    await fake.wait_for(lambda: fake.channel_messages(channel)[-1].content == "4")
    refused = [call for call in fake.calls if call.status == 429]
    assert refused
    assert bot.errors == []


async def test_the_gateway_compresses_as_discord_py_asks(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    assert fake.gateway.compression == ["zlib-stream"]  # discord.py asked, the fake obliged
    interaction = await fake.slash(ada, channel, "secret")  # and the client reads the frames
    await interaction.acknowledged.wait()

    # What a compressed connection looks like on the wire: one zlib stream, flushed per message.
    stream = zlib.decompressobj()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{fake.gateway_url}?v=10&encoding=json&compress=zlib-stream") as ws,
    ):
        hello = await ws.receive()
        assert hello.type is aiohttp.WSMsgType.BINARY
        assert hello.data.endswith(b"\x00\x00\xff\xff")
        assert json.loads(stream.decompress(hello.data))["op"] == 10
        await ws.send_json({"op": 1, "d": None})
        ack = await ws.receive()
        assert ack.data.endswith(b"\x00\x00\xff\xff")
        assert json.loads(stream.decompress(ack.data)) == {"op": 11}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{fake.gateway_url}?v=10&encoding=json") as ws,
    ):
        hello = await ws.receive()
        assert hello.type is aiohttp.WSMsgType.TEXT  # plain JSON when not asked
    assert fake.gateway.compression[-2:] == ["zlib-stream", None]


async def test_dropped_and_stalled_connections(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    route = "POST /channels/{channel_id}/messages"

    # Dropped after the fake did the work: posted, but the client never hears so.
    fake.drop(route, phase="response")
    await fake.slash(ada, channel, "post", text="posted, unheard")
    await fake.wait_for(lambda: bot.broken)
    assert isinstance(bot.broken.pop(), aiohttp.ServerDisconnectedError)
    assert fake.channel_messages(channel)[-1].content == "posted, unheard"
    assert (fake.calls_to(route)[-1].status, fake.calls_to(route)[-1].answered) == (200, False)

    # Headers, then half a body.
    fake.drop(route, phase="body")
    await fake.slash(ada, channel, "post", text="cut short")
    await fake.wait_for(lambda: bot.broken)
    assert isinstance(bot.broken.pop(), aiohttp.ClientPayloadError)

    # Dropped as it arrives: nothing done; a large upload sees the connection reset.
    fake.drop(route, phase="request", count=2)
    await fake.slash(ada, channel, "post", text="lost")
    await fake.wait_for(lambda: bot.broken)
    assert isinstance(bot.broken.pop(), aiohttp.ServerDisconnectedError)
    form = aiohttp.FormData()
    form.add_field("payload_json", '{"content": "big"}', content_type="application/json")
    form.add_field("files[0]", io.BytesIO(b"\0" * (8 * 1024 * 1024)), filename="big.bin")
    with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)):
        await _rest(fake, "POST", f"/channels/{channel.id}/messages", data=form)
    assert "lost" not in [m.content for m in fake.channel_messages(channel)]
    assert [(c.status, c.answered) for c in fake.calls_to(route)[-2:]] == [(0, False)] * 2

    # Stalled: no answer until the client gives up (discord.py sets no REST timeout of its
    # own), or until the fake closes the connection.
    fake.stall(route)
    await fake.slash(ada, channel, "post", text="never", deadline=0.3)
    await fake.wait_for(lambda: bot.broken)
    assert isinstance(bot.broken.pop(), TimeoutError)
    fake.stall(route, seconds=0.2)
    started = time.perf_counter()
    await fake.slash(ada, channel, "post", text="given up")
    await fake.wait_for(lambda: bot.broken)
    assert isinstance(bot.broken.pop(), aiohttp.ServerDisconnectedError)
    assert time.perf_counter() - started >= 0.2
    assert not {"never", "given up"} & {m.content for m in fake.channel_messages(channel)}

    # Then the connection pool and the client carry on.
    await fake.slash(ada, channel, "post", text="after the faults")
    await fake.wait_for(lambda: fake.channel_messages(channel)[-1].content == "after the faults")
    assert bot.broken == []
    assert bot.errors == []


async def test_a_closed_session_raises_in_the_client(
    fake: FakeDiscord, world: tuple[Guild, Channel, User]
) -> None:
    """Not the server's doing: a client that was closed (a restart) refuses every call. A bot
    holding on to an old client's channels sees this."""
    _, channel, _ = world
    async with running(fake, ProbeBot()) as client:
        stale = client.get_partial_messageable(channel.id)
    with pytest.raises(RuntimeError, match="Session is closed"):
        await stale.send("from the old client")


async def test_messages_older_than_an_hour_cannot_be_edited(
    fake: FakeDiscord, bot: ProbeBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    text_channel = bot.get_channel(channel.id)
    assert isinstance(text_channel, discord.TextChannel)
    posted = await text_channel.send("fresh")
    await posted.edit(content="edited within the hour")
    fake.advance(60 * 60 + 1)
    with pytest.raises(discord.HTTPException) as refused:
        await posted.edit(content="an hour later")
    assert (refused.value.status, refused.value.code) == (400, 30046)
    assert fake.messages[posted.id].content == "edited within the hour"

    # Through an interaction token too (here one that outlives the hour, to get past 50027).
    fake.token_lifetime_s = 2 * 60 * 60
    interaction = await fake.slash(ada, channel, "secret")
    await interaction.acknowledged.wait()
    fake.advance(60 * 60 + 1)
    webhook = f"{fake.api_url}/webhooks/{fake.application_id}/{interaction.token}"
    async with (
        aiohttp.ClientSession() as session,
        session.patch(f"{webhook}/messages/@original", json={"content": "late"}) as response,
    ):
        assert (response.status, (await response.json())["code"]) == (400, 30046)


async def test_wait_for_is_a_ceiling_not_a_pace(fake: FakeDiscord) -> None:
    started = time.perf_counter()
    assert await fake.wait_for(lambda: "now") == "now"
    assert time.perf_counter() - started < 1
    with pytest.raises(AssertionError, match=r"waited 0\.1 s for nothing"):
        await fake.wait_for(lambda: None, within=0.1, what="nothing")
