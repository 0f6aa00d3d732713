"""What Discord accepts, from its own OpenAPI description: the project's table matches the spec,
the fake Discord refuses what Discord refuses (with the real discord.py client), and
`sdbot discord check` / `sdbot discord sync` do what an operator needs."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands
from pydantic import SecretStr

from bot import discord_schema
from bot.cli import EXIT_OK, EXIT_USAGE, main
from bot.discord.sync import CommandSync
from bot.discord_schema import generate
from bot.settings import Settings
from fake_discord import Channel, FakeDiscord, Guild, User
from fake_discord.client import running

SPEC = Path(__file__).resolve().parents[2] / "shared" / "discord-api-spec" / "openapi.json"


def paths(problems: list[discord_schema.Problem]) -> set[str]:
    return {".".join(p.path) for p in problems}


@pytest.mark.skipif(not SPEC.is_file(), reason="Discord's spec is beside the project in ../shared")
def test_the_table_is_what_the_spec_says() -> None:
    """routes.json is regenerated from Discord's OpenAPI file; a stale or hand-edited table
    fails here (run `python -m bot.discord_schema.generate ../shared/...`)."""
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    assert generate.render(generate.build(spec)) == generate.TABLE.read_text(encoding="utf-8")
    # The spec's own numbers reach the table: a command description is 1-100 characters.
    schemas = json.loads(generate.TABLE.read_text(encoding="utf-8"))["schemas"]
    assert (
        schemas["ApplicationCommandUpdateRequest"]["properties"]["description"]["maxLength"] == 100
    )


def test_message_bodies_are_checked_field_by_field() -> None:
    ok = {"content": "hi", "allowed_mentions": {"parse": [], "users": [123]}}  # ids as numbers
    assert discord_schema.problems("POST", "/channels/1/messages", body=ok) == []
    too_long = discord_schema.problems("POST", "/channels/1/messages", body={"content": "x" * 2001})
    assert [(p.path, p.code) for p in too_long] == [(("content",), "BASE_TYPE_MAX_LENGTH")]
    embeds = discord_schema.problems(
        "POST", "/channels/1/messages", body={"embeds": [{"title": "t"}] * 11}
    )
    assert paths(embeds) == {"embeds"}
    nested = discord_schema.problems(
        "PATCH", "/webhooks/1/tok/messages/@original", body={"embeds": [{"title": "t" * 257}]}
    )
    assert paths(nested) == {"embeds.0.title"}
    reply = discord_schema.problems(
        "POST", "/channels/1/messages", body={"content": "x", "message_reference": {}}
    )
    assert [(p.path, p.code) for p in reply] == [
        (("message_reference", "message_id"), "BASE_TYPE_REQUIRED")
    ]
    mentions = discord_schema.problems(
        "POST", "/channels/1/messages",
        body={"content": "x", "allowed_mentions": {"users": list(range(1, 102))}},
    )  # fmt: skip
    assert paths(mentions) == {"allowed_mentions.users"}
    # What the schema does not know is ignored, as Discord ignores it.
    assert (
        discord_schema.problems("POST", "/channels/1/messages", body={"content": "x", "z": 1}) == []
    )


def test_interaction_answers_and_queries() -> None:
    route = "/interactions/1/tok/callback"
    assert discord_schema.problems("POST", route, {"with_response": "1"}, {"type": 5}) == []
    long_answer = {"type": 4, "data": {"content": "x" * 2001}}
    assert paths(discord_schema.problems("POST", route, body=long_answer)) == {"data.content"}
    assert discord_schema.problems("POST", route, body={"type": 77})
    history = discord_schema.problems("GET", "/channels/1/messages", {"limit": "101"})
    assert [(p.path, p.code) for p in history] == [(("limit",), "NUMBER_TYPE_MAX")]


def test_command_rules_beyond_the_schema() -> None:
    def command(**overrides: Any) -> dict[str, Any]:
        return {"name": "imagine", "description": "draw", "type": 1, **overrides}

    def option(name: str, required: bool) -> dict[str, Any]:
        return {"type": 3, "name": name, "description": "d", "required": required}

    route = "/applications/1/commands"
    assert discord_schema.problems("PUT", route, body=[command()]) == []
    body = [command(description="x" * 101)]
    assert paths(discord_schema.problems("PUT", route, body=body)) == {"0.description"}
    order = [command(options=[option("a", False), option("b", True)])]
    assert [p.code for p in discord_schema.problems("PUT", route, body=order)] == [
        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID"
    ]
    assert paths(discord_schema.problems("PUT", route, body=[command(name="Imagine")])) == {
        "0.name"
    }
    assert paths(discord_schema.problems("PUT", route, body=[command(), command()])) == {"1.name"}
    choices = [{"name": "c" * 100, "value": "v" * 100}] * 25
    huge = command(options=[{**option(f"o{i}", False), "choices": choices} for i in range(2)])
    assert [p.code for p in discord_schema.problems("PUT", route, body=[huge])] == [
        "APPLICATION_COMMAND_TOO_LARGE"
    ]
    too_many = command(options=[option(f"o{i}", False) for i in range(26)])
    assert paths(discord_schema.problems("PUT", route, body=[too_many])) == {"0.options"}


class Probe(discord.Client):
    def __init__(self, description: str, sync: CommandSync | None = None) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.command_sync = sync
        group = app_commands.Group(name="mod", description="moderation")
        group.add_command(app_commands.Group(name="allowlist", description=description))
        self.tree.add_command(group)

        @group.command(name="ping", description="answers")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("pong")

    async def setup_hook(self) -> None:
        if self.command_sync is not None:
            await self.command_sync.run(self.tree)
        else:
            await self.tree.sync()


async def test_the_fake_refuses_a_description_over_100_characters(
    fake_discord: FakeDiscord,
) -> None:
    """The bug that kept sdbot off the real Discord: a 101-character group description."""
    client = Probe("x" * 101)
    with pytest.raises(app_commands.CommandSyncFailure) as failure:
        await client.login(fake_discord.token)
    await client.close()
    assert failure.value.code == 50035
    # discord.py reads the field's path from Discord's errors and names the group.
    assert "'mod allowlist'" in str(failure.value)
    assert "description: Must be between 1 and 100 in length." in str(failure.value)
    (call,) = fake_discord.calls_to("PUT /applications/{application_id}/commands")
    assert (call.status, call.code) == (400, 50035)
    assert not fake_discord.commands


async def test_a_request_over_25_mib_of_files_is_refused(
    fake_discord: FakeDiscord, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, _ = world
    client = Probe("moderation")
    async with running(fake_discord, client):
        target = client.get_partial_messageable(channel.id)
        big = [discord.File(io.BytesIO(bytes(9 * 1024 * 1024)), f"{i}.bin") for i in range(3)]
        with pytest.raises(discord.HTTPException) as refused:
            await target.send(files=big)
        assert (refused.value.status, refused.value.code) == (413, 40005)
        small = discord.File(io.BytesIO(bytes(1024)), "small.bin")
        await target.send(files=[small])  # a request within the limit goes through


async def test_commands_are_pushed_only_when_they_changed(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    state = tmp_path / "discord-commands.json"
    put = "PUT /applications/{application_id}/commands"
    for _ in range(2):
        async with running(fake_discord, Probe("lists", CommandSync(state))):
            pass
    assert len(fake_discord.calls_to(put)) == 1  # the second start found them unchanged
    async with running(fake_discord, Probe("the lists", CommandSync(state))):
        pass
    assert len(fake_discord.calls_to(put)) == 2
    assert fake_discord.commands[(None, "mod")]["options"][0]["description"] == "the lists"
    async with running(fake_discord, Probe("the lists", CommandSync(state, force=True))):
        pass
    assert len(fake_discord.calls_to(put)) == 3  # sdbot discord sync: regardless


async def test_commands_scoped_to_one_guild(
    fake_discord: FakeDiscord, world: tuple[Guild, Channel, User], tmp_path: Path
) -> None:
    guild, channel, ada = world
    client = Probe("lists", CommandSync(tmp_path / "state.json", guild.id))
    async with running(fake_discord, client):
        assert (guild.id, "mod") in fake_discord.commands
        assert (None, "mod") not in fake_discord.commands
        interaction = await fake_discord.slash(ada, channel, "mod ping")
        reply = await fake_discord.wait_for(lambda: interaction.original, within=60)
        assert reply.content == "pong"


@pytest.fixture
def scratch_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`sdbot` as a user runs it, in a scratch data folder."""
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("SDBOT_DATA_DIR", str(tmp_path / "data"))


@pytest.mark.usefixtures("scratch_env")
def test_sdbot_discord_check_passes_for_the_bot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["discord", "check"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "/imagine, /edit, /describe, /job, /cancel, /help, /mod" in out
    assert "texts: 8 checked" in out  # the vary, edit and ControlNet titles and /describe too
    assert "ok" in out


@pytest.mark.usefixtures("scratch_env")
def test_sdbot_discord_check_names_what_discord_would_refuse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.discord import mod

    original = mod.mod_commands

    def with_a_long_description(client: Any) -> app_commands.Group:
        group = original(client)
        allowlist = group.get_command("allowlist")
        assert isinstance(allowlist, app_commands.Group)
        allowlist.description = "x" * 101
        return group

    monkeypatch.setattr("bot.discord.client.mod_commands", with_a_long_description)
    assert main(["discord", "check"]) == EXIT_USAGE
    out = capsys.readouterr().out
    assert "/mod allowlist: description: Must be between 1 and 100 in length." in out


@pytest.mark.usefixtures("scratch_env")
def test_sdbot_discord_check_reads_the_texts_the_bot_writes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("bot.discord.render.refusal", lambda outcome: "🚫 " + "reason; " * 300)
    assert main(["discord", "check"]) == EXIT_USAGE
    assert "text blocked prompt: Must be 2000 or fewer in length. (2402 characters)" in (
        capsys.readouterr().out
    )


async def test_sdbot_discord_sync_pushes_to_a_guild(
    fake_discord: FakeDiscord,
    world: tuple[Guild, Channel, User],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bot.cli.discord import run_sync

    guild, _, _ = world
    settings = settings.model_copy(
        update={
            "discord_token": SecretStr(fake_discord.token),
            "discord_api_url": fake_discord.api_url,
            "discord_gateway_url": fake_discord.gateway_url,
        }
    )
    assert await run_sync(argparse.Namespace(guild=guild.id), settings) == EXIT_OK
    assert f"pushed 8 commands to guild {guild.id}" in capsys.readouterr().out
    assert {name for g, name in fake_discord.commands if g == guild.id} == {
        "imagine", "edit", "describe", "job", "cancel", "help", "mod", "privacy",
    }  # fmt: skip
    assert (settings.data_dir / "discord-commands.json").is_file()
    assert not fake_discord.gateway.connects  # REST only: the bot did not come online
