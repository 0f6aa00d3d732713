"""/imagine's model, lora and aspect options on the fake Discord, with the real discord.py client
and the real worker: the post names the model and every LoRA with its weight, autocomplete
offers what this server and channel allow, and a bad name gets an ephemeral reason.

The LoRA is the one shipped with the embedded model (``outline``) when it is there, else one
made here the same way (PEFT on the embedded UNet, saved in diffusers' LoRA format)."""

from __future__ import annotations

import asyncio
import functools
import shutil
from pathlib import Path
from typing import Any

import discord
import numpy as np
import pytest
from discord import app_commands
from safetensors.numpy import save_file

from bot.discord.client import ImagineBot
from bot.settings import EMBEDDED_LORA_DIR, Settings
from fake_discord import Channel, FakeDiscord, Guild, Message, Permission, User
from fake_discord.client import running, with_controls
from fake_discord.server import Interaction
from generation.models import EMBEDDED_MODEL_DIR
from storage.models import JobStatus

SHIPPED_LORA = EMBEDDED_LORA_DIR / "outline.safetensors"


def make_lora(folder: Path, name: str = "outline") -> Path:
    """A rank-4 LoRA on the embedded UNet's attention projections, its up-projections random
    (PEFT starts them at zero, which would change nothing), saved as diffusers saves LoRAs."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(EMBEDDED_MODEL_DIR / "unet")
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets))
    generator = torch.Generator().manual_seed(0)
    state = {
        key: torch.randn(value.shape, generator=generator) * 0.05 if "lora_B" in key else value
        for key, value in get_peft_model_state_dict(unet).items()
    }
    StableDiffusionPipeline.save_lora_weights(
        folder, unet_lora_layers=state, weight_name=f"{name}.safetensors"
    )
    return folder / f"{name}.safetensors"


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loras")  # the one LoRA, whatever else ships
    if SHIPPED_LORA.is_file():
        shutil.copy(SHIPPED_LORA, folder)
    else:
        make_lora(folder)
    return folder


@pytest.fixture
def settings(settings: Settings, lora_dir: Path, tmp_path: Path, model_dir: Path) -> Settings:
    """Two models from one folder: the embedded one, and a copy only age-restricted channels
    may use; the LoRA, and an embedding, ``glow``."""
    models = tmp_path / "models.toml"
    models.write_text(
        f'[[model]]\nname = "embedded"\nsource = "{model_dir}"\ndefault = true\n\n'
        f'[[model]]\nname = "after-dark"\nsource = "{model_dir}"\nnsfw_only = true\n'
        'description = "the same, for NSFW channels"\n'
    )
    embeddings = tmp_path / "embeddings"
    embeddings.mkdir()
    glow = np.random.default_rng(1).normal(0, 0.5, (1, 128)).astype("f4")  # the encoder's width
    save_file({"emb_params": glow}, str(embeddings / "glow.safetensors"))
    return settings.model_copy(
        update={"lora_dir": lora_dir, "models_file": models, "embedding_dir": embeddings}
    )


def _original(interaction: Interaction) -> Message | None:
    return interaction.original


def _said(interaction: Interaction) -> str:
    """What the bot answered, once it did (a deferred answer is empty until then)."""
    return "\n".join(message.content for message in interaction.messages)


async def _choices(interaction: Interaction) -> list[str]:
    await asyncio.wait_for(interaction.acknowledged.wait(), 30)
    assert interaction.response_type == 8
    return [choice["value"] for choice in interaction.choices or []]


async def test_the_post_names_the_model_each_lora_with_its_weight_embeddings_and_notes(
    fake_discord: FakeDiscord, bot: ImagineBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    styled = await fake_discord.slash(
        ada, channel, "imagine", prompt="a red circle", model="embedded",
        lora="outline:0.8", aspect="1:1", seed=3,
    )  # fmt: skip
    # 249 words, a token each: past the embedded text encoder's 8 windows of 30 tokens.
    long = "glow " + " ".join(["red"] * 248)
    cut = await fake_discord.slash(ada, channel, "imagine", prompt=long, seed=3)
    message = await fake_discord.wait_for(lambda: with_controls(styled.original), within=120)
    assert message.attachments[0].image().size == (512, 512)
    used = "64×64 · 20 steps · guidance 3 · sampler dpmpp · model `embedded` · LoRA `outline:0.8`"
    assert message.content.endswith(used)  # no note: the prompt is within the windows
    said = (await fake_discord.wait_for(lambda: with_controls(cut.original), within=120)).content
    assert "model `embedded` · embeddings `glow`\n" in said
    assert "\nℹ️ prompt cut after 8 windows: 9 tokens dropped" in said
    records = {record.prompt: record for record in await bot.service.storage.audit.list_jobs()}
    assert records["a red circle"].status is JobStatus.SUCCEEDED
    assert (records["a red circle"].model, records["a red circle"].loras) == (
        "embedded", ("outline:0.8",)
    )  # fmt: skip
    assert (records[long].loras, records[long].embeddings) == ((), ("glow",))
    # /job names them too.
    for record, named in [
        (records["a red circle"], "model `embedded` · LoRA `outline:0.8`"),
        (records[long], "model `embedded` · embeddings `glow`"),
    ]:
        details = await fake_discord.slash(ada, channel, "job", id=record.id)
        said = await fake_discord.wait_for(functools.partial(_said, details), within=30)
        assert named in said, said


async def test_autocomplete_offers_the_models_and_loras_allowed_here(
    fake_discord: FakeDiscord, bot: ImagineBot, world: tuple[Guild, Channel, User]
) -> None:
    guild, channel, ada = world
    ask = fake_discord.autocomplete
    # The NSFW-only model is offered in an age-restricted channel only.
    assert await _choices(await ask(ada, channel, "imagine", "model", model="")) == ["embedded"]
    late = fake_discord.create_channel(guild, "late", nsfw=True)
    offered = await _choices(await ask(ada, late, "imagine", "model", model=""))
    assert offered == ["embedded", "after-dark"]  # the default first
    assert await _choices(await ask(ada, late, "imagine", "model", model="dark")) == ["after-dark"]
    # A LoRA is completed after the entries typed before it, which are kept as typed.
    typed = await ask(ada, channel, "imagine", "lora", prompt="a", lora="out")
    assert await _choices(typed) == ["outline"]
    after = await ask(ada, channel, "imagine", "lora", lora="outline:0.5, ou")
    assert await _choices(after) == []  # outline is listed already
    # The server's moderators allow no LoRA and one model: nothing else is offered.
    await bot.service.storage.guild_settings.update(
        guild.id, allowed_loras=[], allowed_models=["after-dark"]
    )
    assert await _choices(await ask(ada, channel, "imagine", "lora", lora="")) == []
    assert await _choices(await ask(ada, late, "imagine", "model", model="")) == ["after-dark"]


async def test_a_bad_model_lora_or_aspect_gets_an_ephemeral_reason_naming_it(
    fake_discord: FakeDiscord, bot: ImagineBot, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    cases: list[tuple[dict[str, Any], str]] = [
        ({"lora": "nope:0.5"}, "⚠️ lora must be one of outline, got 'nope'"),
        ({"lora": "outline:3"}, "⚠️ lora weight must be a number from -2 to 2 (outline), got 3"),
        ({"lora": "outline:x"}, "⚠️ lora must be NAME or NAME:WEIGHT, WEIGHT a number"),
        ({"model": "sd99"}, "⚠️ model must be one of embedded, after-dark, got 'sd99'"),
        ({"model": "after-dark"}, "🎨 the model 'after-dark' is only for age-restricted"),
        ({"aspect": "16:9"}, "⚠️ aspect must be one of 1:1, got '16:9'"),
    ]
    for options, answer in cases:
        asked = await fake_discord.slash(ada, channel, "imagine", prompt="a cat", **options)
        message = await fake_discord.wait_for(functools.partial(_original, asked), within=30)
        assert asked.ephemeral, options
        assert message.content.startswith(answer), message.content


async def test_a_moderator_limits_the_models_and_loras_with_mod_settings(
    fake_discord: FakeDiscord, bot: ImagineBot, world: tuple[Guild, Channel, User]
) -> None:
    guild, channel, ada = world
    mod = fake_discord.create_user("mod")
    role = fake_discord.create_role(guild, "mods", Permission.MANAGE_GUILD)
    fake_discord.add_member(guild, mod, [role])
    late = fake_discord.create_channel(guild, "late", nsfw=True)

    async def answer(member: User, where: Channel, command: str, **options: Any) -> Message:
        asked = await fake_discord.slash(member, where, command, **options)
        return await fake_discord.wait_for(
            lambda: asked.followups[-1] if asked.followups else _original(asked), within=60
        )

    said = await answer(mod, channel, "mod settings", models="after-dark", loras="none")
    assert said.ephemeral
    assert "after-dark" in said.content, said.content
    settings = await bot.service.storage.guild_settings.get(guild.id)
    assert (settings.allowed_models, settings.allowed_loras) == (("after-dark",), ())
    refused = await answer(ada, late, "imagine", prompt="a red circle", model="embedded")
    assert refused.ephemeral
    assert refused.content.startswith("🎨 "), refused.content
    assert "after-dark" in refused.content, refused.content
    assert "'embedded'" in refused.content, refused.content
    refused = await answer(ada, late, "imagine", prompt="a red circle", lora="outline")
    assert refused.ephemeral
    assert refused.content.startswith("🎨 "), refused.content
    assert "outline" in refused.content, refused.content
    jobs = await bot.service.storage.audit.list_jobs(guild_id=guild.id)
    assert [(job.status, job.model, job.loras) for job in jobs] == [
        (JobStatus.REFUSED, "embedded", ()),
        (JobStatus.REFUSED, "after-dark", ("outline:1",)),
    ]  # recorded, with what was asked (no model named: the server's one allowed model)
    # An unknown model is refused by /mod settings itself, naming what the bot has.
    said = await answer(mod, channel, "mod settings", models="sd99")
    assert "'sd99'" in said.content, said.content
    assert "embedded" in said.content, said.content


class _Completer(discord.Client):
    """A bare client whose /pick completes with whatever the test gives it."""

    def __init__(self, answer: list[app_commands.Choice[str]]) -> None:
        super().__init__(intents=discord.Intents.none())
        self.tree = app_commands.CommandTree(self)

        async def complete(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return answer

        @self.tree.command(name="pick", description="pick one")
        @app_commands.autocomplete(thing=complete)
        async def pick(interaction: discord.Interaction, thing: str) -> None:
            await interaction.response.send_message(thing)

    async def setup_hook(self) -> None:
        await self.tree.sync()


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        ([app_commands.Choice(name=f"n{i}", value=f"v{i}") for i in range(26)], "25 or fewer"),
        ([app_commands.Choice(name="long", value="v" * 101)], "100 or fewer in length"),
        ([app_commands.Choice(name="n" * 101, value="v")], "between 1 and 100 in length"),
    ],
)
async def test_the_fake_refuses_an_autocomplete_answer_discord_refuses(
    fake_discord: FakeDiscord,
    world: tuple[Guild, Channel, User],
    answer: list[app_commands.Choice[str]],
    refusal: str,
) -> None:
    _, channel, ada = world
    async with running(fake_discord, _Completer(answer)):
        interaction = await fake_discord.autocomplete(ada, channel, "pick", "thing", thing="v")
        call = await fake_discord.wait_for(
            lambda: next(iter(fake_discord.calls_to("POST /interactions/")), None)
        )
    assert (call.status, call.code) == (400, 50035)
    assert refusal in str(call.error), call.error
    assert not interaction.responded
    assert interaction.choices is None


async def test_an_autocomplete_is_answered_with_choices_only(
    fake_discord: FakeDiscord, world: tuple[Guild, Channel, User]
) -> None:
    _, channel, ada = world
    answer = [app_commands.Choice(name="one", value="1")]
    async with running(fake_discord, _Completer(answer)):
        interaction = await fake_discord.autocomplete(ada, channel, "pick", "thing", thing="")
        assert await _choices(interaction) == ["1"]
        with pytest.raises(ValueError, match="needs the text typed"):
            await fake_discord.autocomplete(ada, channel, "pick", "thing")
        command = await fake_discord.slash(ada, channel, "pick", thing="1")
        await asyncio.wait_for(command.acknowledged.wait(), 30)
        assert command.response_type == 4
