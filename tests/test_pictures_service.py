"""Pictures in through the real service: admission reads, scores and traces each picture, records
it with its hash, and queues the job for the real worker on the embedded model; a flagged
picture is refused where it could not be shown, a bad file before anything is recorded; the
vary and zoom controls make their children from a grid's tile and from an upscale."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image, ImageDraw
from sqlalchemy import update

from bot.access import Control, Use, control_use, controls_for, drawn_from_prompt
from bot.app import open_service, open_storage
from bot.imagine.errors import ControlUnavailable
from bot.imagine.outcomes import AlreadyStarted, ImagineOutcome, Refusal, Submitted
from bot.imagine.service import ImagineService
from bot.imagine.types import Attachment, PicturesIn, Requester
from bot.settings import Settings
from generation.errors import InvalidOption
from generation.options import RequestedOptions
from generation.protocol import split_watermark_id
from generation.starts import IMAGE_STRENGTH, VARY_STRENGTHS
from moderation.policy import Disposition, NsfwPolicy
from storage import migrations
from storage.models import JobInput, JobKind, JobStatus
from storage.records import JobRecord

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # diffusers, numpy 2
]

GUILD = 18
OWNER, SOMEONE = 1800, 1801
MEMBER = Requester(source="test", guild_id=GUILD, channel_id=180, user_id=OWNER)
NSFW_ROOM = dataclasses.replace(MEMBER, channel_id=181, channel_nsfw=True)
WITHIN_S = 300  # a job that never ends fails its test instead of hanging the suite
STEPS = 4


def controlnet_folder(model_dir: Path, folder: Path) -> Path:
    """An operator's canny ControlNet for the embedded model: diffusers' ``from_unet`` copy of
    its UNet, untrained (what is checked here is the path a control picture takes, not how
    well the shipped one conditions: tests/embedded/test_controlnet.py measures that)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet")
    # Two stride-2 steps in its conditioning embedding: 64 px pictures to 16 px latents (the
    # embedded VAE scales by 4; diffusers' default three steps are SD's 8).
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64))
    controlnet.save_pretrained(folder)
    return folder


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path
) -> AsyncIterator[ImagineService]:
    """One service and one worker for the module, on the embedded model offered in three
    sizes (square, wide, tall) with a canny ControlNet, at rates no test here reaches."""
    folder = tmp_path_factory.mktemp("pictures")
    canny = await asyncio.to_thread(controlnet_folder, model_dir, folder / "canny")
    models = folder / "models.toml"
    models.write_text(
        f'[[model]]\nname = "embedded"\nsource = "{model_dir}"\ndefault = true\n'
        'sizes = ["1:1=64x64", "3:2=96x64", "2:3=64x96"]\n'
        f'controlnets = {{ canny = "{canny}" }}\n'
    )
    settings = Settings(
        _env_file=None,
        model=str(model_dir),
        models_file=models,
        data_dir=folder / "data",
        database_url=f"sqlite+aiosqlite:///{folder / 'sdbot.db'}",
        device="cpu",
        user_images_per_hour=100_000,
        user_burst=10_000,
        guild_images_per_hour=100_000,
        guild_burst=10_000,
        max_jobs_per_user=20,
    )
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    async with open_storage(settings) as storage, open_service(settings, storage) as opened:
        yield opened


def picture(width: int, height: int, kind: str = "PNG") -> bytes:
    """A red disc on a blue field, as a member's file."""
    image = Image.new("RGB", (width, height), (30, 60, 200))
    side = min(width, height) // 3
    ImageDraw.Draw(image).ellipse(
        (width // 2 - side, height // 2 - side, width // 2 + side, height // 2 + side),
        fill=(220, 30, 30),
    )
    out = io.BytesIO()
    image.save(out, kind)
    return out.getvalue()


def mask(width: int, height: int) -> bytes:
    """White (redrawn) in the left half."""
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).rectangle((0, 0, width // 2, height), fill=255)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def bomb(side: int = 30_000) -> bytes:
    """A PNG whose header says ``side`` × ``side`` pixels, in a few bytes: refused unread."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * side) * 4)  # a few rows of black; the rest missing
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def may(
    control: Control, job: JobRecord, user: int, *, mod: bool = False, open_: bool = False
) -> Use:
    return control_use(control, job, user_id=user, moderator=mod, open_to_everyone=open_)


async def follow(
    service: ImagineService, submitted: Submitted | ImagineOutcome | AlreadyStarted
) -> ImagineOutcome:
    assert isinstance(submitted, Submitted), submitted
    return await asyncio.wait_for(service.follow_submitted(submitted), WITHIN_S)


async def record_of(service: ImagineService, job_id: int) -> JobRecord:
    record = await service.storage.audit.get_job(job_id)
    assert record is not None
    return record


async def job_count(service: ImagineService) -> int:
    return len(await service.storage.audit.list_jobs(limit=1000))


async def test_img2img_from_a_png_records_its_start_strength_and_hash(
    service: ImagineService,
) -> None:
    data = picture(64, 64)
    outcome = await asyncio.wait_for(
        service.imagine(
            RequestedOptions("a red circle", steps=STEPS, variants=2),
            MEMBER,
            pictures=PicturesIn(image=Attachment(data, "disc.png", "image/png")),
        ),
        WITHIN_S,
    )
    assert outcome.status is JobStatus.SUCCEEDED, outcome.error
    assert len(outcome.images) == 2
    record = await record_of(service, outcome.job_id)
    assert (record.kind, record.start, record.strength) == (
        JobKind.IMAGINE,
        "image",
        IMAGE_STRENGTH,
    )
    [given] = record.inputs
    assert given.role == "image"
    assert given.sha256 == hashlib.sha256(data).hexdigest()
    assert (given.format, given.size_bytes, given.width, given.height) == ("PNG", len(data), 64, 64)
    assert given.nsfw_score is not None
    assert 0.0 <= given.nsfw_score < 0.5
    assert given.parent_job_id is None
    assert outcome.inputs == record.inputs  # what the front ends show
    stored = await service.storage.audit.input_pngs(outcome.job_id)
    assert stored is not None
    assert stored.image is not None
    assert stored.mask is None


async def test_a_strength_out_of_range_or_without_an_image_is_refused_before_a_record(
    service: ImagineService,
) -> None:
    before = await job_count(service)
    image = PicturesIn(image=Attachment(picture(64, 64), "disc.png"))
    with pytest.raises(InvalidOption, match=r"strength must be a number from 0\.05 to 1, got 1\.5"):
        await service.submit(RequestedOptions("a red circle", strength=1.5), MEMBER, pictures=image)
    with pytest.raises(InvalidOption, match=r"strength must be given with an image:"):
        await service.submit(RequestedOptions("a red circle", strength=0.5), MEMBER)
    with pytest.raises(InvalidOption, match=r"control_type must be given with a control: pic"):
        await service.submit(RequestedOptions("a red circle", control="canny"), MEMBER)
    with pytest.raises(InvalidOption, match=r"control_strength must be given with a control:"):
        await service.submit(RequestedOptions("a red circle", control_scale=0.5), MEMBER)
    assert await job_count(service) == before


async def test_the_size_is_the_models_nearest_the_pictures_aspect(
    service: ImagineService,
) -> None:
    wide = await service.submit(
        RequestedOptions("a red circle", steps=STEPS, variants=1),
        MEMBER,
        pictures=PicturesIn(image=Attachment(picture(300, 190, "JPEG"), "wide.jpg")),
    )
    tall = await service.submit(
        RequestedOptions("a red circle", steps=STEPS, variants=1),
        MEMBER,
        pictures=PicturesIn(image=Attachment(picture(120, 200), "tall.png")),
    )
    asked = await service.submit(
        RequestedOptions("a red circle", steps=STEPS, variants=1, aspect="1:1"),
        MEMBER,
        pictures=PicturesIn(image=Attachment(picture(300, 190), "wide.png")),
    )
    sizes = []
    for submitted in (wide, tall, asked):
        outcome = await follow(service, submitted)
        assert outcome.status is JobStatus.SUCCEEDED, outcome.error
        record = await record_of(service, outcome.job_id)
        sizes.append((record.width, record.height, record.inputs[0].width))
    assert sizes == [(96, 64, 300), (64, 96, 120), (64, 64, 300)]


async def test_a_flagged_picture_is_refused_and_recorded_outside_nsfw_channels(
    service: ImagineService,
) -> None:
    """Every picture is flagged at this guild's threshold: refused in a channel that is not
    age-restricted and under the block policy, recorded with its score and hash; accepted in
    an age-restricted channel under the spoiler policy."""
    guild = 1818
    here = dataclasses.replace(MEMBER, guild_id=guild)
    await service.storage.guild_settings.update(guild, nsfw_threshold=1e-6)
    data = picture(64, 64)
    before = await job_count(service)
    refused = await service.submit(
        RequestedOptions("a red circle", steps=STEPS, variants=1),
        here,
        pictures=PicturesIn(image=Attachment(data, "disc.png")),
    )
    assert isinstance(refused, ImagineOutcome)
    assert (refused.status, refused.refusal) == (JobStatus.REFUSED, Refusal.INPUT)
    assert refused.error is not None
    assert refused.error.startswith("the picture you gave scored NSFW 0.")
    assert refused.error.endswith("(at or above 0.00) and this channel is not age-restricted")
    record = await record_of(service, refused.job_id)
    assert (record.status, record.error) == (JobStatus.REFUSED, refused.error)
    [given] = record.inputs
    assert given.sha256 == hashlib.sha256(data).hexdigest()
    assert given.nsfw_score is not None
    assert f"{given.nsfw_score:.2f}" in refused.error
    kept = await service.storage.audit.input_pngs(refused.job_id)
    assert kept is not None
    assert not kept.image  # a refused picture's pixels are not kept (its hash and score are)
    assert await job_count(service) == before + 1  # the refusal's record, nothing queued
    assert service.queue.limiter.depth == 0  # type: ignore[attr-defined]  # the LocalQueue's

    blocked_room = dataclasses.replace(NSFW_ROOM, guild_id=guild)
    still = await service.submit(
        RequestedOptions("a red circle", steps=STEPS, variants=1),
        blocked_room,
        pictures=PicturesIn(image=Attachment(data, "disc.png")),
    )
    assert isinstance(still, ImagineOutcome)
    assert still.refusal is Refusal.INPUT
    assert still.error is not None
    assert still.error.endswith("and this server never shows flagged pictures")

    await service.storage.guild_settings.update(guild, nsfw_policy=NsfwPolicy.SPOILER)
    accepted = await follow(
        service,
        await service.submit(
            RequestedOptions("a red circle", steps=STEPS, variants=1),
            blocked_room,
            pictures=PicturesIn(image=Attachment(data, "disc.png")),
        ),
    )
    assert accepted.status is JobStatus.SUCCEEDED, accepted.error
    assert accepted.images[0].disposition is Disposition.SPOILER


async def test_a_picture_sdbot_made_links_the_new_job_to_its_parent(
    service: ImagineService,
) -> None:
    made = await asyncio.wait_for(
        service.imagine(RequestedOptions("a blue square", steps=STEPS, variants=1), MEMBER),
        WITHIN_S,
    )
    assert made.status is JobStatus.SUCCEEDED, made.error
    png = made.images[0].png
    assert png is not None
    again = await asyncio.wait_for(
        service.imagine(
            RequestedOptions("a blue square", steps=STEPS, variants=1),
            MEMBER,
            pictures=PicturesIn(image=Attachment(png, "sdbot.png")),
        ),
        WITHIN_S,
    )
    assert again.status is JobStatus.SUCCEEDED, again.error
    [given] = (await record_of(service, again.job_id)).inputs
    assert given.watermark_id is not None
    assert split_watermark_id(given.watermark_id) == (made.job_id, 1)
    assert given.parent_job_id == made.job_id
    assert again.inputs[0].parent_job_id == made.job_id


async def test_an_edit_with_a_mask_redraws_and_records_both_pictures(
    service: ImagineService,
) -> None:
    data, drawn = picture(96, 64), mask(96, 64)
    outcome = await asyncio.wait_for(
        service.imagine(
            RequestedOptions("a green triangle", steps=STEPS, variants=1),
            MEMBER,
            pictures=PicturesIn(image=Attachment(data, "a.png"), mask=Attachment(drawn, "m.png")),
        ),
        WITHIN_S,
    )
    assert outcome.status is JobStatus.SUCCEEDED, outcome.error
    record = await record_of(service, outcome.job_id)
    assert (record.kind, record.start, record.strength) == (JobKind.EDIT, "inpaint", 1.0)
    assert (record.width, record.height) == (96, 64)
    roles = {given.role: given for given in record.inputs}
    assert set(roles) == {"image", "mask"}
    assert roles["mask"].sha256 == hashlib.sha256(drawn).hexdigest()
    assert roles["mask"].nsfw_score is None  # a mask shows nothing


@pytest.mark.parametrize(
    ("pictures", "message"),
    [
        (PicturesIn(image=Attachment(b"", "empty.png")), "image"),
        (PicturesIn(image=Attachment(b"just some text\n" * 20, "notes.txt")), "image"),
        (PicturesIn(image=Attachment(picture(64, 64, "GIF"), "moving.gif")), "GIF"),
        (PicturesIn(image=Attachment(bomb(), "huge.png")), "30000×30000 px"),
        (
            PicturesIn(
                image=Attachment(picture(64, 64), "a.png"), mask=Attachment(mask(32, 32), "m.png")
            ),
            "mask",
        ),
        (PicturesIn(mask=Attachment(mask(64, 64), "m.png")), "mask must be given with an image:"),
        (
            PicturesIn(control=Attachment(picture(64, 64), "c.png")),
            "control_type must be one of canny",
        ),
    ],
)
async def test_bad_files_are_refused_before_a_record(
    service: ImagineService, pictures: PicturesIn, message: str
) -> None:
    before = await job_count(service)
    with pytest.raises(InvalidOption, match=message):
        await service.submit(
            RequestedOptions("a red circle", steps=STEPS), MEMBER, pictures=pictures
        )
    assert await job_count(service) == before
    assert service.queue.limiter.depth == 0  # type: ignore[attr-defined]  # the LocalQueue's


async def test_a_control_picture_without_edges_is_refused_before_a_record(
    service: ImagineService,
) -> None:
    flat = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 60, 200)).save(flat, "PNG")
    before = await job_count(service)
    with pytest.raises(InvalidOption, match=r"a picture with outlines to follow \(canny found"):
        await service.submit(
            RequestedOptions("a red circle", steps=STEPS, control="canny"),
            MEMBER,
            pictures=PicturesIn(control=Attachment(flat.getvalue(), "flat.png")),
        )
    assert await job_count(service) == before


async def test_vary_and_zoom_make_their_children(service: ImagineService) -> None:
    grid = await asyncio.wait_for(
        service.imagine(RequestedOptions("a red circle", steps=STEPS, variants=4), MEMBER),
        WITHIN_S,
    )
    assert grid.status is JobStatus.SUCCEEDED, grid.error
    parent = await record_of(service, grid.job_id)

    # Vary variant 2: four new seeds, from the tile drawn again at the parent's seed 2.
    varied = await follow(
        service, await service.use_control(grid.job_id, 2, MEMBER, control=Control.VARY)
    )
    assert varied.status is JobStatus.SUCCEEDED, varied.error
    assert len(varied.images) == 4
    child = await record_of(service, varied.job_id)
    assert (child.kind, child.parent_job_id, child.parent_variant) == (JobKind.VARY, parent.id, 2)
    assert (child.start, child.strength) == ("image", VARY_STRENGTHS["subtle"])
    assert (child.source_seed, child.source_upscale) == (parent.seeds[1], 1)
    assert len(set(child.seeds)) == 4
    assert parent.seeds[1] not in child.seeds
    again = await service.use_control(grid.job_id, 2, MEMBER, control=Control.VARY)
    assert isinstance(again, AlreadyStarted)  # claimed once
    assert again.job is not None
    assert again.job.id == varied.job_id

    with pytest.raises(ControlUnavailable, match="not an upscale"):
        await service.use_control(grid.job_id, None, MEMBER, control=Control.ZOOM)

    # Zoom out an upscale of variant 3: its base size, four new seeds, from its own seed ×2.
    upscaled = await follow(service, await service.use_control(grid.job_id, 3, MEMBER))
    assert upscaled.status is JobStatus.SUCCEEDED, upscaled.error
    with pytest.raises(ControlUnavailable, match="already an upscale"):
        await service.use_control(upscaled.job_id, 1, MEMBER, control=Control.VARY)
    zoomed = await follow(
        service, await service.use_control(upscaled.job_id, None, MEMBER, control=Control.ZOOM)
    )
    assert zoomed.status is JobStatus.SUCCEEDED, zoomed.error
    assert len(zoomed.images) == 4
    zoom = await record_of(service, zoomed.job_id)
    assert (zoom.kind, zoom.parent_job_id, zoom.parent_variant) == (
        JobKind.ZOOM,
        upscaled.job_id,
        3,
    )
    assert (zoom.start, zoom.strength, zoom.width, zoom.height) == ("outpaint", 1.0, 64, 64)
    assert (zoom.source_seed, zoom.source_upscale) == (parent.seeds[2], 2)
    assert zoomed.images[0].width == grid.images[0].width  # a grid tile, not an upscale

    # What each post offers, and who may use it (bot.access: the Discord reactions).
    big = await record_of(service, upscaled.job_id)
    offered = {
        record.kind: controls_for(
            record.kind, has_picture=True, from_prompt=drawn_from_prompt(record)
        )
        for record in (parent, big, child, zoom)
    }
    assert offered == {
        JobKind.IMAGINE: (Control.UPSCALE, Control.VARY, Control.REROLL, Control.DELETE),
        JobKind.UPSCALE: (Control.ZOOM, Control.DELETE),
        JobKind.VARY: (Control.UPSCALE, Control.REROLL, Control.DELETE),
        JobKind.ZOOM: (Control.UPSCALE, Control.REROLL, Control.DELETE),
    }
    assert may(Control.ZOOM, big, SOMEONE, open_=True) is Use.ALLOW
    assert may(Control.ZOOM, big, SOMEONE) is Use.REFUSE
    assert may(Control.ZOOM, parent, OWNER) is Use.IGNORE  # a grid has no 🔍
    assert may(Control.VARY, big, OWNER) is Use.IGNORE  # an upscale has no ↖️
    assert may(Control.VARY, parent, SOMEONE, mod=True) is Use.ALLOW

    # A vary's and a zoom's tiles are upscaled as they were drawn: from the same source.
    for child_grid in (varied, zoomed):
        upscale = await follow(service, await service.use_control(child_grid.job_id, 1, MEMBER))
        assert upscale.status is JobStatus.SUCCEEDED, upscale.error
        big = await record_of(service, upscale.job_id)
        drawn = await record_of(service, child_grid.job_id)
        assert (big.kind, big.start, big.strength, big.source_seed, big.source_upscale) == (
            JobKind.UPSCALE,
            drawn.start,
            drawn.strength,
            drawn.source_seed,
            drawn.source_upscale,
        )
        assert big.seeds == (drawn.seeds[0],)
        # Drawn from another job's picture: not varied or zoomed again (a seed cannot say it).
        with pytest.raises(ControlUnavailable, match="drawn from a picture"):
            await service.use_control(child_grid.job_id, 2, MEMBER, control=Control.VARY)
        with pytest.raises(ControlUnavailable, match="drawn from a picture"):
            await service.use_control(upscale.job_id, None, MEMBER, control=Control.ZOOM)


async def test_a_guild_set_to_strong_varies_strongly_and_a_withheld_tile_cannot_be_varied(
    service: ImagineService,
) -> None:
    guild = 1819
    here = dataclasses.replace(MEMBER, guild_id=guild)
    await service.storage.guild_settings.update(guild, vary="strong")
    grid = await asyncio.wait_for(
        service.imagine(RequestedOptions("a red circle", steps=STEPS, variants=2), here), WITHIN_S
    )
    assert grid.status is JobStatus.SUCCEEDED, grid.error
    varied = await follow(
        service, await service.use_control(grid.job_id, 1, here, control=Control.VARY)
    )
    child = await record_of(service, varied.job_id)
    assert child.strength == VARY_STRENGTHS["strong"]

    await service.storage.guild_settings.update(guild, nsfw_threshold=1e-6)  # all withheld now
    withheld = await asyncio.wait_for(
        service.imagine(RequestedOptions("a red circle", steps=STEPS, variants=2), here), WITHIN_S
    )
    assert withheld.images[0].disposition is Disposition.WITHHELD
    with pytest.raises(ControlUnavailable, match=r"variant 1 of job \d+ was withheld"):
        await service.use_control(withheld.job_id, 1, here, control=Control.VARY)


async def test_a_reroll_of_an_img2img_job_starts_from_the_same_pictures(
    service: ImagineService,
) -> None:
    data = picture(64, 64)
    first = await asyncio.wait_for(
        service.imagine(
            RequestedOptions("a red circle", steps=STEPS, variants=1, strength=0.4),
            MEMBER,
            pictures=PicturesIn(image=Attachment(data, "disc.png")),
        ),
        WITHIN_S,
    )
    assert first.status is JobStatus.SUCCEEDED, first.error
    rerolled = await follow(service, await service.use_control(first.job_id, None, MEMBER))
    assert rerolled.status is JobStatus.SUCCEEDED, rerolled.error
    child = await record_of(service, rerolled.job_id)
    assert (child.kind, child.start, child.strength) == (JobKind.REROLL, "image", 0.4)
    assert [given.sha256 for given in child.inputs] == [hashlib.sha256(data).hexdigest()]
    parent_png = await service.storage.audit.input_pngs(first.job_id)
    child_png = await service.storage.audit.input_pngs(rerolled.job_id)
    assert parent_png is not None
    assert child_png is not None
    assert child_png.image == parent_png.image
    with pytest.raises(ControlUnavailable, match="drawn from a picture"):
        await service.use_control(first.job_id, 1, MEMBER, control=Control.VARY)
    upscaled = await follow(service, await service.use_control(first.job_id, 1, MEMBER))
    assert upscaled.status is JobStatus.SUCCEEDED, upscaled.error
    big = await record_of(service, upscaled.job_id)
    assert (big.kind, big.start, big.strength) == (JobKind.UPSCALE, "image", 0.4)
    assert [given.role for given in big.inputs] == ["image"]

    # Once retention dropped the prepared picture, the control says so and starts nothing.
    async with service.storage.sessions.begin() as session:
        await session.execute(
            update(JobInput).where(JobInput.job_id == first.job_id).values(png=None)
        )
    before = await job_count(service)
    with pytest.raises(ControlUnavailable, match="no longer kept; give them again"):
        await service.use_control(first.job_id, 1, dataclasses.replace(MEMBER, user_id=SOMEONE))
    assert await job_count(service) == before
    assert np.asarray(Image.open(io.BytesIO(child_png.image or b""))).shape == (64, 64, 3)


async def test_a_control_picture_is_scored_and_sent_as_its_edges(service: ImagineService) -> None:
    data = picture(64, 64)
    outcome = await asyncio.wait_for(
        service.imagine(
            RequestedOptions(
                "a red circle", steps=STEPS, variants=1, control="canny", control_scale=0.8
            ),
            MEMBER,
            pictures=PicturesIn(control=Attachment(data, "edges.png")),
        ),
        WITHIN_S,
    )
    assert outcome.status is JobStatus.SUCCEEDED, outcome.error
    record = await record_of(service, outcome.job_id)
    assert (record.start, record.control, record.control_scale) == ("text", "canny", 0.8)
    [given] = record.inputs
    assert (given.role, given.sha256) == ("control", hashlib.sha256(data).hexdigest())
    assert given.nsfw_score is not None  # a control picture is scored like any picture
    stored = await service.storage.audit.input_pngs(outcome.job_id)
    assert stored is not None
    assert stored.control is not None
    edges = np.asarray(Image.open(io.BytesIO(stored.control)))
    assert edges.shape == (64, 64, 3)
    assert set(np.unique(edges)) <= {0, 255}  # white edges on black
    assert 0 < (edges == 255).mean() < 0.5

    with pytest.raises(InvalidOption, match=r"control must be a prompt without image:"):
        await service.submit(
            RequestedOptions("a red circle", control="canny"),
            MEMBER,
            pictures=PicturesIn(
                image=Attachment(data, "a.png"), control=Attachment(data, "edges.png")
            ),
        )
