"""Pictures in on Discord: /imagine with image: and control:, /edit, /describe, and the vary
and zoom controls, with the real discord.py client against the fake Discord and the real worker
process on the embedded model (one bot and worker for the module: a grid takes seconds).

The pictures are real files made here with Pillow and uploaded as a member's client uploads
them; the bot reads them from the fake's CDN, which records every download.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image, ImageDraw

from bot.discord import endpoints
from bot.discord.client import ImagineBot
from bot.discord.render import CONTROLS, DELETE, REROLL, UPSCALES, ZOOM
from bot.imagine.service import ImagineService
from bot.settings import Settings
from fake_discord import Channel, FakeDiscord, Guild, Message, Upload, User
from fake_discord.client import running, with_controls
from fake_discord.server import Interaction
from storage import migrations
from storage.models import JobKind, JobStatus
from storage.records import JobRecord

pytestmark = pytest.mark.asyncio(loop_scope="module")

BLUE, RED = (40, 80, 200), (220, 40, 40)
# A grid drawn from a picture, a vary's or a zoom's: upscale, reroll and delete (a vary starts
# from a seed's picture again, which only a prompt's own picture is).
PICTURE_CONTROLS = [*UPSCALES, REROLL, DELETE]


def png_of(picture: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=format)
    return buffer.getvalue()


def red_circle(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """What the embedded model draws and its analyser reads: a red circle on blue."""
    picture = Image.new("RGB", size, BLUE)
    width, height = size
    ImageDraw.Draw(picture).ellipse(
        (width * 5 // 16, height * 5 // 16, width * 11 // 16, height * 11 // 16), fill=RED
    )
    return picture


@dataclasses.dataclass
class World:
    fake: FakeDiscord
    bot: ImagineBot
    guild: Guild
    channel: Channel
    ada: User

    @property
    def service(self) -> ImagineService:
        return self.bot.service


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Settings:
    folder = tmp_path_factory.mktemp("pictures")
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only option
        model=str(model_dir),
        data_dir=folder / "data",
        database_url=f"sqlite+aiosqlite:///{folder / 'sdbot.db'}",
        device="cpu",
        max_input_mb=1.0,  # a noise PNG of a few hundred pixels a side is over it
        user_images_per_hour=100_000,  # ada makes every request of the module
        user_burst=10_000,
        guild_images_per_hour=100_000,
        guild_burst=10_000,
        max_jobs_per_user=20,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(module_settings: Settings) -> AsyncIterator[World]:
    """One fake Discord, one bot and one worker for the module; a guild, a channel, ada."""
    from bot.app import open_service, open_storage

    await asyncio.to_thread(migrations.upgrade, module_settings.effective_database_url())
    fake = await FakeDiscord().start()
    pointed = Settings(
        _env_file=None,  # type: ignore[call-arg]
        discord_api_url=fake.api_url,
        discord_gateway_url=fake.gateway_url,
    )
    before = endpoints.use(endpoints.from_settings(pointed))
    guild = fake.create_guild("art club")
    channel = fake.create_channel(guild, "images")
    ada = fake.create_user("ada")
    fake.add_member(guild, ada)
    try:
        async with (
            open_storage(module_settings) as storage,
            open_service(module_settings, storage) as service,
        ):
            client = ImagineBot(service, edit_every_s=0.2, notice_s=5.0, guild_ready_timeout=0.05)
            async with running(fake, client):
                yield World(fake, client, guild, channel, ada)
    finally:
        endpoints.use(before)
        await fake.close()
    fake.check()  # no route the fake does not know, no failure inside it


def refusal_of(interaction: Interaction) -> Message | None:
    """The answer of a refused request: the one message left, once it is there."""
    shown = interaction.messages
    return shown[0] if len(shown) == 1 and shown[0].content else None


async def job_of(world: World, message: Message) -> JobRecord:
    """The job a post shows."""
    linked = await world.service.storage.posts.job_for_message(message.id)
    assert linked is not None
    return linked[0]


def said_with(interaction: Interaction, text: str) -> Message | None:
    """The interaction's first message once it says ``text``."""
    shown = interaction.messages
    return shown[0] if shown and text in shown[0].content else None


def replies(world: World, to: Message) -> list[Message]:
    return [
        message
        for message in world.fake.channel_messages(world.channel)
        if message.message_reference
        and str(message.message_reference.get("message_id")) == str(to.id)
    ]


def reply_with(world: World, to: Message, controls: list[str]) -> Callable[[], Message | None]:
    def found() -> Message | None:
        for reply in replies(world, to):
            if with_controls(reply, len(controls)):
                return reply
        return None

    return found


async def imagine(world: World, **options: Any) -> Interaction:
    return await world.fake.slash(world.ada, world.channel, "imagine", **options)


async def grid_of(world: World, **options: Any) -> Message:
    interaction = await imagine(world, **options)
    return await world.fake.wait_for(lambda: with_controls(interaction.original), within=180)


async def test_imagine_from_a_picture_posts_a_grid_and_records_the_pictures_hash(
    world: World,
) -> None:
    data = png_of(red_circle((96, 96)))
    interaction = await imagine(
        world, prompt="a red circle", image=Upload("circle.png", data), seed=5
    )
    await asyncio.wait_for(interaction.acknowledged.wait(), 30)
    assert interaction.response_type == 5  # "thinking…" at once: the picture is read after it
    message = await world.fake.wait_for(
        lambda: with_controls(interaction.original, len(PICTURE_CONTROLS)), within=180
    )
    assert message.reacted == PICTURE_CONTROLS
    assert not message.ephemeral
    assert message.attachments[0].image().size == (512, 512)
    heading, said = message.content.splitlines()[:2]
    assert "· from your picture (strength 0.6) · job " in heading
    assert said == "1️⃣–4️⃣ upscale · 🔄 reroll · ❌ delete"  # what the reactions do
    [download] = [d for d in world.fake.downloads if d.path.endswith("/circle.png")]
    assert download.status == 200
    record = await job_of(world, message)
    assert (record.kind, record.status, record.start) == ("imagine", JobStatus.SUCCEEDED, "image")
    assert record.strength == pytest.approx(0.6)
    [given] = record.inputs
    assert (given.role, given.sha256) == ("image", hashlib.sha256(data).hexdigest())
    assert (given.width, given.height, given.format) == (96, 96, "PNG")
    assert f"job {record.id}" in message.content


@pytest.mark.parametrize(
    ("upload", "said"),
    [
        (Upload("cat.gif", png_of(red_circle(), "GIF")), "cat.gif (a GIF)"),
        (Upload("empty.png", b""), "empty.png (0 bytes)"),
        (Upload("notes.png", b"not a picture at all"), "notes.png"),
    ],
)
async def test_a_file_that_is_no_picture_gets_one_private_answer_naming_it(
    world: World, upload: Upload, said: str
) -> None:
    before = len(await world.service.storage.audit.list_jobs())
    interaction = await imagine(world, prompt="a red circle", image=upload)
    answer = await world.fake.wait_for(lambda: refusal_of(interaction), within=60)
    assert answer.ephemeral
    assert answer.content.startswith("⚠️ image must be "), answer.content
    assert said in answer.content
    assert len(await world.service.storage.audit.list_jobs()) == before  # nothing recorded


async def test_a_file_over_the_limit_is_refused_before_it_is_downloaded(world: World) -> None:
    noise = np.random.default_rng(3).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    data = png_of(Image.fromarray(noise))
    assert len(data) > 2**20  # over the module's 1 MB, within Discord's 10 MiB
    interaction = await imagine(world, prompt="a red circle", image=Upload("noise.png", data))
    answer = await world.fake.wait_for(lambda: refusal_of(interaction), within=60)
    assert answer.ephemeral
    size = f"{len(data) / 2**20:.1f} MB"
    assert answer.content == (
        f"⚠️ image must be a PNG, JPEG or WebP picture of at most 1 MB, got 'noise.png ({size})'"
    )
    assert not [d for d in world.fake.downloads if d.path.endswith("/noise.png")]


async def test_edit_refuses_a_mask_of_another_size(world: World) -> None:
    picture = png_of(red_circle((64, 64)))
    mask = png_of(Image.new("L", (32, 32), 255))
    interaction = await world.fake.slash(
        world.ada, world.channel, "edit", prompt="a blue square",
        image=Upload("circle.png", picture), mask=Upload("mask.png", mask),
    )  # fmt: skip
    answer = await world.fake.wait_for(lambda: refusal_of(interaction), within=60)
    assert answer.ephemeral
    assert answer.content.startswith("⚠️ mask must be a mask of the picture's own size, 64×64 px")
    assert "mask.png (32×32 px)" in answer.content


async def test_edit_redraws_the_white_of_the_mask(world: World) -> None:
    picture = png_of(red_circle((64, 64)))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    interaction = await world.fake.slash(
        world.ada, world.channel, "edit", prompt="a yellow square", strength=0.9,
        image=Upload("circle.png", picture), mask=Upload("mask.png", png_of(mask)),
    )  # fmt: skip
    message = await world.fake.wait_for(
        lambda: with_controls(interaction.original, len(PICTURE_CONTROLS)), within=180
    )
    assert "· edit of your picture (strength 0.9) · job " in message.content
    record = await job_of(world, message)
    assert (record.kind, record.start, record.status) == ("edit", "inpaint", JobStatus.SUCCEEDED)
    assert sorted(given.role for given in record.inputs) == ["image", "mask"]


async def test_describe_says_the_prompts_of_a_picture_numbered(world: World) -> None:
    data = png_of(red_circle())
    interaction = await world.fake.slash(
        world.ada, world.channel, "describe", image=Upload("circle.png", data)
    )
    answer = await world.fake.wait_for(lambda: said_with(interaction, "1️⃣"), within=60)
    assert not answer.ephemeral  # as Midjourney's: the channel learns from it
    lines = answer.content.splitlines()
    assert lines[0].startswith("**prompts for circle.png** · for model `embedded` · job ")
    assert lines[1] == "1️⃣ a large red circle in the centre on a blue background"
    assert lines[-1].endswith(" a red circle on a blue background")
    record = next(
        r for r in await world.service.storage.audit.list_jobs() if r.kind == JobKind.DESCRIBE
    )
    assert record.inputs[0].sha256 == hashlib.sha256(data).hexdigest()


async def test_a_vary_reaction_posts_four_variations_at_the_servers_strength(
    world: World,
) -> None:
    owner = world.fake.owner
    changed = await world.fake.slash(owner, world.channel, "mod settings", vary="strong")
    said = await world.fake.wait_for(lambda: changed.original, within=30)
    assert "✅ vary: subtle → strong" in said.content, said.content
    grid = await grid_of(world, prompt="a blue square", seed=21, steps=8)
    assert grid.reacted == list(CONTROLS)
    assert grid.content.splitlines()[1] == ("1️⃣–4️⃣ upscale · ↖️ ↗️ ↙️ ↘️ vary · 🔄 reroll · ❌ delete")
    await world.fake.add_reaction(world.ada, grid, "↗️")  # the top right tile: variant 2
    reply = await world.fake.wait_for(reply_with(world, grid, PICTURE_CONTROLS), within=180)
    assert reply.reacted == PICTURE_CONTROLS
    parent = await world.service.storage.posts.job_for_message(grid.id)
    assert parent is not None
    assert f"· vary of #2 of job {parent[0].id} (strength 0.7) · job " in reply.content
    assert reply.attachments[0].image().size == (512, 512)
    child = await world.service.storage.posts.job_for_message(reply.id)
    assert child is not None
    assert (child[0].kind, child[0].parent_variant, child[0].status) == (
        "vary",
        2,
        JobStatus.SUCCEEDED,
    )


async def test_zoom_out_an_upscale_posts_a_grid(world: World) -> None:
    grid = await grid_of(world, prompt="a green circle", seed=31, steps=8)
    await world.fake.add_reaction(world.ada, grid, "3️⃣")
    upscale = await world.fake.wait_for(reply_with(world, grid, [ZOOM, DELETE]), within=180)
    assert upscale.reacted == [ZOOM, DELETE]
    assert upscale.content.splitlines()[1] == "🔍 zoom out 2× · ❌ delete"
    await world.fake.add_reaction(world.ada, upscale, ZOOM)
    zoomed = await world.fake.wait_for(reply_with(world, upscale, PICTURE_CONTROLS), within=180)
    made = await world.service.storage.posts.job_for_message(upscale.id)
    assert made is not None
    assert f"· zoom out 2× of job {made[0].id} · job " in zoomed.content
    child = await world.service.storage.posts.job_for_message(zoomed.id)
    assert child is not None
    assert (child[0].kind, child[0].start, child[0].status) == (
        "zoom",
        "outpaint",
        JobStatus.SUCCEEDED,
    )


async def test_a_flagged_picture_is_refused_with_its_mark(world: World) -> None:
    strict = world.fake.create_guild("strict club")
    channel = world.fake.create_channel(strict, "images")
    world.fake.add_member(strict, world.ada)
    # The lowest threshold there is: the NSFW check flags every picture.
    await world.service.storage.guild_settings.update(strict.id, nsfw_threshold=1e-9)
    data = png_of(red_circle())
    interaction = await world.fake.slash(
        world.ada, channel, "imagine", prompt="a red circle", image=Upload("flagged.png", data)
    )
    answer = await world.fake.wait_for(lambda: refusal_of(interaction), within=60)
    assert answer.ephemeral
    assert answer.content.startswith("🖼️ "), answer.content
    refused = [r for r in await world.service.storage.audit.list_jobs() if r.guild_id == strict.id]
    assert [(r.status, r.inputs[0].sha256) for r in refused] == [
        (JobStatus.REFUSED, hashlib.sha256(data).hexdigest())
    ]


async def test_a_control_picture_guides_a_grid_drawn_from_the_prompt(world: World) -> None:
    edges = png_of(red_circle((64, 64)))
    interaction = await imagine(
        world, prompt="a red circle", control=Upload("outline.png", edges), control_strength=0.8
    )
    message = await world.fake.wait_for(
        lambda: with_controls(interaction.original, len(PICTURE_CONTROLS)), within=180
    )
    assert "· following the canny edges of your picture (0.8) · job " in message.content
    record = await job_of(world, message)
    assert (record.start, record.control, record.status) == ("text", "canny", JobStatus.SUCCEEDED)
    assert record.control_scale == pytest.approx(0.8)
    assert [given.role for given in record.inputs] == ["control"]


@pytest.mark.parametrize(
    ("options", "answer"),
    [
        ({"control_type": "canny"}, "⚠️ control must be a picture with control_type canny"),
        ({"strength": 0.5}, "⚠️ strength must be "),
    ],
)
async def test_a_pictures_option_without_its_picture_is_refused(
    world: World, options: dict[str, Any], answer: str
) -> None:
    interaction = await imagine(world, prompt="a red circle", **options)
    said = await world.fake.wait_for(lambda: refusal_of(interaction), within=60)
    assert said.ephemeral
    assert said.content.startswith(answer), said.content
