"""Pictures in, in the record: a job's input rows written with it (refused ones too), their PNGs
read back byte for byte only when asked (the column is deferred), deleted with their job, the
parent they name forgotten with it; how a job starts recorded and read back as its options, for
every kind of start; export without the pixels; and a recovered job sent again with its
pictures (or failed with the reason when they are gone), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import hashlib
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from bot.app import open_service, open_storage
from bot.imagine.records import (
    input_images,
    missing_inputs,
    new_job,
    options_of,
    requested_of,
)
from bot.imagine.types import Derived, Requester
from bot.settings import Settings
from generation.options import UPSCALE_FACTOR, GenerationOptions, RequestedOptions
from generation.protocol import InputImages
from generation.queue.redis import decode_payload
from generation.starts import Source
from moderation.prompts import PromptVerdict
from storage import migrations
from storage.audit import AuditLog
from storage.engine import SessionFactory
from storage.export import write_csv, write_jsonl
from storage.models import JobKind, JobStatus
from storage.records import InputPngs, NewInput
from tests.conftest import REDIS_URL
from tests.test_storage import new_job as new_record

MEMBER = Requester("discord", guild_id=7, channel_id=70, user_id=700)
ALLOWED = PromptVerdict(True)
# Bytes no text column would keep as they are: NUL, high bytes, a PNG's own signature.
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
MASK = b"\x89PNG\r\n\x1a\n\x00\xff" * 300
CONTROL = b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000 + b"edges"


def picture(role: str, png: bytes, **found: Any) -> NewInput:
    return NewInput(
        role=role,
        sha256=hashlib.sha256(png + role.encode()).hexdigest(),  # the file as given: not the png
        format="JPEG" if role == "image" else "PNG",
        size_bytes=len(png) + 17,
        width=640,
        height=480,
        png=png,
        **found,
    )


def options(seeds: tuple[int, ...] = (5, 6), **start: Any) -> GenerationOptions:
    return GenerationOptions("a red circle", "blurry", seeds, 12, 4.5, 64, 96, "euler", **start)


@contextmanager
def statements(sessions: SessionFactory) -> Iterator[list[str]]:
    """The SQL the database is sent meanwhile."""
    engine = sessions.kw["bind"]
    sent: list[str] = []

    def seen(*args: Any) -> None:
        sent.append(str(args[2]))

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)


async def test_a_jobs_pictures_are_kept_with_it_and_read_back_byte_for_byte(
    sessions: SessionFactory,
) -> None:
    audit = AuditLog(sessions)
    given = [
        picture("image", IMAGE, nsfw_score=0.0125, watermark_id=99, parent_job_id=None),
        picture("mask", MASK),
    ]
    job_id = await audit.create_job(new_record(start="inpaint", strength=0.8), inputs=given)
    plain = await audit.create_job(new_record())

    record = await audit.get_job(job_id)
    assert record is not None
    assert [
        (i.role, i.sha256, i.format, i.size_bytes, i.width, i.height) for i in record.inputs
    ] == [(g.role, g.sha256, g.format, g.size_bytes, 640, 480) for g in given]
    assert [(i.nsfw_score, i.watermark_id) for i in record.inputs] == [(0.0125, 99), (None, None)]
    assert all(i.created_at is not None for i in record.inputs)
    assert (record.start, record.strength) == ("inpaint", 0.8)

    assert await audit.input_pngs(job_id) == InputPngs(image=IMAGE, mask=MASK, control=None)
    assert await audit.input_pngs(plain) is None
    assert await input_images(audit, job_id) == InputImages(IMAGE, MASK, None)
    assert await input_images(audit, plain) is None
    listed = {job.id: job for job in await audit.list_jobs()}
    assert (len(listed[job_id].inputs), listed[plain].inputs) == (2, ())


async def test_reading_a_jobs_record_never_reads_the_pixels(sessions: SessionFactory) -> None:
    audit = AuditLog(sessions)
    job_id = await audit.create_job(new_record(start="image"), inputs=[picture("image", IMAGE)])
    with statements(sessions) as sent:
        record = await audit.get_job(job_id)
        await audit.list_jobs()
        await audit.open_jobs()
    assert record is not None
    assert len(record.inputs) == 1
    reads = [sql for sql in sent if "job_inputs" in sql]
    assert reads, sent
    assert not any("png" in sql for sql in reads), reads
    with statements(sessions) as sent:
        await audit.input_pngs(job_id)
    assert any("job_inputs.png" in sql for sql in sent), sent


async def test_a_refused_job_keeps_the_picture_it_was_refused_for(
    sessions: SessionFactory,
) -> None:
    audit = AuditLog(sessions)
    flagged = picture("control", CONTROL, nsfw_score=0.97)
    job_id = await audit.create_job(
        new_record(control="canny", control_scale=1.0), refused="input", inputs=[flagged]
    )
    record = await audit.get_job(job_id)
    assert record is not None
    assert (record.status, record.error) == (JobStatus.REFUSED, "input")
    [kept] = record.inputs
    assert (kept.role, kept.nsfw_score, kept.sha256) == ("control", 0.97, flagged.sha256)


async def test_a_job_done_as_it_is_recorded_is_never_open(sessions: SessionFactory) -> None:
    """A description is recorded finished, with the picture it read (its pixels not kept):
    no moment where a restart could take it for a job to draw."""
    audit = AuditLog(sessions)
    read = dataclasses.replace(picture("image", IMAGE, nsfw_score=0.5), png=None)
    done = await audit.create_job(
        new_record(kind=JobKind.DESCRIBE), inputs=[read], finished=JobStatus.SUCCEEDED
    )
    failed = await audit.create_job(
        new_record(kind=JobKind.DESCRIBE), finished=JobStatus.FAILED, error="no caption model"
    )
    assert await audit.open_jobs() == []
    record, other = await audit.get_job(done), await audit.get_job(failed)
    assert record is not None
    assert other is not None
    assert (record.status, record.error, record.finished_at is not None) == (
        JobStatus.SUCCEEDED, None, True
    )  # fmt: skip
    assert (other.status, other.error) == (JobStatus.FAILED, "no caption model")
    assert [(i.role, i.nsfw_score) for i in record.inputs] == [("image", 0.5)]
    assert await audit.input_pngs(done) == InputPngs()
    with pytest.raises(ValueError, match="'queued' is not a terminal status"):
        await audit.create_job(new_record(), finished=JobStatus.QUEUED)


async def test_an_input_with_an_unknown_role_is_a_bug_and_records_nothing(
    sessions: SessionFactory,
) -> None:
    audit = AuditLog(sessions)
    with pytest.raises(ValueError, match="'sketch' is not one of image, mask, control"):
        await audit.create_job(new_record(), inputs=[picture("sketch", IMAGE)])
    assert await audit.list_jobs() == []  # one transaction: the job went with its picture


async def test_inputs_go_with_their_job_and_forget_a_parent_that_goes(
    sessions: SessionFactory,
) -> None:
    audit = AuditLog(sessions)
    parent = await audit.create_job(new_record(prompt="the picture's maker"))
    child = await audit.create_job(
        new_record(start="image", strength=0.6),
        inputs=[picture("image", IMAGE, watermark_id=5, parent_job_id=parent)],
    )
    other = await audit.create_job(new_record(start="image"), inputs=[picture("image", MASK)])
    async with sessions.begin() as session:
        await session.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": parent})
    record = await audit.get_job(child)
    assert record is not None
    [kept] = record.inputs
    assert (kept.watermark_id, kept.parent_job_id) == (5, None)

    async with sessions.begin() as session:
        await session.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": child})
    async with sessions() as session:
        left = (await session.execute(text("SELECT job_id FROM job_inputs"))).all()
    assert [tuple(row) for row in left] == [(other,)]


STARTS = {
    "text": (options(), None),
    "control": (options(control="canny", control_scale=0.7), None),
    "image": (options(start="image", strength=0.6), None),
    "edit": (options(start="inpaint", strength=1.0), Derived(JobKind.EDIT, 1)),
    "vary": (
        options(start="image", strength=0.35, source=Source(123, 1)),
        Derived(JobKind.VARY, 1, 3, source=Source(123, 1), start="image", strength=0.35),
    ),
    "zoom": (
        options(start="outpaint", strength=1.0, source=Source(77, UPSCALE_FACTOR)),
        Derived(JobKind.ZOOM, 1, 2, source=Source(77, 2), start="outpaint"),
    ),
    "upscale": (options(seeds=(6,), upscale=UPSCALE_FACTOR), Derived(JobKind.UPSCALE, 1, 2, 2)),
}


@pytest.mark.parametrize("kind", list(STARTS))
async def test_how_a_job_starts_comes_back_as_its_options(
    sessions: SessionFactory, kind: str
) -> None:
    audit = AuditLog(sessions)
    parent = await audit.create_job(new_record())
    asked, derived = STARTS[kind]
    if derived is not None:
        derived = dataclasses.replace(derived, parent_job_id=parent)
    new = new_job(MEMBER, asked, ALLOWED, derived=derived)
    assert new.source == "discord"  # where it was asked, not the options' source picture
    job_id = await audit.create_job(new)
    record = await audit.get_job(job_id)
    assert record is not None

    assert options_of(record) == asked
    text_start = asked.start == "text"
    assert record.start == asked.start
    assert record.strength == (None if text_start else asked.strength)
    assert (record.source_seed, record.source_upscale) == (
        (None, None) if asked.source is None else (asked.source.seed, asked.source.upscale)
    )
    assert (record.control, record.control_scale) == (
        (None, None) if asked.control is None else (asked.control, asked.control_scale)
    )
    assert record.kind == ("imagine" if derived is None else derived.kind.value)
    assert requested_of(record) == RequestedOptions(
        "a red circle",
        "blurry",
        None,
        12,
        4.5,
        64,
        96,
        len(asked.seeds),
        "euler",
        model="",
        strength=record.strength,
        control=record.control,
        control_scale=record.control_scale,
    )


def test_a_start_says_which_of_its_pictures_are_missing() -> None:
    assert missing_inputs(options(), None) is None
    assert missing_inputs(options(start="image"), InputImages(IMAGE)) is None
    assert missing_inputs(options(start="image", source=Source(1)), None) is None  # a vary
    assert missing_inputs(options(start="outpaint", source=Source(1, 2)), None) is None  # zoom
    assert missing_inputs(options(start="image"), InputImages()) == (
        "the image picture it starts from is no longer stored (start 'image'); "
        "ask again with the picture"
    )
    gone = missing_inputs(options(start="inpaint", control="canny"), InputImages(IMAGE))
    assert gone is not None
    assert gone.startswith("the mask and control pictures it starts from are no longer stored")


async def test_the_export_lists_the_pictures_in_but_never_their_pixels(
    sessions: SessionFactory,
) -> None:
    audit = AuditLog(sessions)
    parent = await audit.create_job(new_record())
    given = picture("image", IMAGE, nsfw_score=0.25, parent_job_id=parent)
    await audit.create_job(new_record(start="image", strength=0.6), inputs=[given])
    jobs = await audit.list_jobs()

    out = io.StringIO()
    write_csv(jobs, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["inputs"] == ""
    assert rows[1]["inputs"] == (
        f"image sha256={given.sha256} bytes={given.size_bytes} size=640x480 nsfw=0.2500 "
        f"parent={parent}"
    )
    assert (rows[1]["start"], rows[1]["strength"], rows[1]["control"]) == ("image", "0.6", "")

    out = io.StringIO()
    write_jsonl(jobs, out)
    exported = [json.loads(line) for line in out.getvalue().splitlines()]
    [shown] = exported[1]["inputs"]
    assert shown["sha256"] == given.sha256
    assert (shown["role"], shown["nsfw_score"], shown["parent_job_id"]) == ("image", 0.25, parent)
    assert "png" not in shown
    assert "png" not in out.getvalue()


@pytest.mark.redis
async def test_a_recovered_job_is_sent_again_with_its_pictures_or_failed_without_them(
    settings: Settings, redis_prefix: str
) -> None:
    """After a restart the bot queues its open jobs again: one given pictures goes with them,
    byte for byte (read from its input rows); one whose pictures are gone is failed with the
    reason, never queued without them. No worker runs: the request is read from Redis."""
    settings = settings.model_copy(update={"redis_url": REDIS_URL, "redis_prefix": redis_prefix})
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    edit = options(start="inpaint", strength=0.9, seeds=(5,))
    async with open_storage(settings) as storage:
        audit = storage.audit
        given = [picture("image", IMAGE), picture("mask", MASK)]
        kept = await audit.create_job(
            new_job(MEMBER, edit, ALLOWED, model="embedded"), inputs=given
        )
        purged = await audit.create_job(
            new_job(MEMBER, edit, ALLOWED, model="embedded"), inputs=given
        )
        describing = await audit.create_job(new_record(kind=JobKind.DESCRIBE))  # its process died
        async with storage.sessions.begin() as session:  # as retention drops a picture
            await session.execute(
                text("UPDATE job_inputs SET png = NULL WHERE job_id = :id AND role = 'mask'"),
                {"id": purged},
            )

        async with open_service(settings, storage) as service:
            assert await service.recover(lambda outcome: None) == 1
            queue: Any = service.queue
            answer = await queue.scripts.claim(args=[redis_prefix, "probe"])
            assert answer
            request, _ = decode_payload(answer[2], answer[5:])
        ended = await audit.get_job(purged)
        description = await audit.get_job(describing)

    assert request.job_id == kept
    assert request.inputs == InputImages(IMAGE, MASK, None)
    assert request.options == dataclasses.replace(edit, model="embedded")
    assert ended is not None
    assert ended.status is JobStatus.FAILED
    assert ended.error == (
        "the mask picture it starts from is no longer stored (start 'inpaint'); "
        "ask again with the picture"
    )
    assert description is not None
    assert (description.status, description.error) == (
        JobStatus.FAILED,
        "stopped before its description was recorded; ask again",
    )


async def test_a_recovered_img2img_job_is_drawn_from_its_kept_picture(settings: Settings) -> None:
    """The whole way back: an img2img job left queued by a stopped bot is drawn at the next
    start by the real worker from the picture its input row kept."""
    import numpy as np

    from generation.inputs import from_png, png_bytes

    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    red = np.zeros((64, 64, 3), dtype=np.uint8)
    red[..., 0] = 255
    asked = dataclasses.replace(
        options(start="image", strength=0.5, seeds=(3,)), width=64, height=64
    )
    asked = dataclasses.replace(asked, steps=4, scheduler="dpmpp")
    async with open_storage(settings) as storage:
        left = await storage.audit.create_job(
            new_job(MEMBER, asked, ALLOWED, model="embedded"),
            inputs=[picture("image", png_bytes(red))],
        )
        outcomes: list[Any] = []
        async with open_service(settings, storage) as service:
            assert await service.recover(outcomes.append) == 1
            await asyncio.wait_for(service.wait_recovered(), 300)
        record = await storage.audit.get_job(left)
    [outcome] = outcomes
    assert outcome.status is JobStatus.SUCCEEDED, outcome
    assert record is not None
    assert (record.status, record.start, record.strength) == (JobStatus.SUCCEEDED, "image", 0.5)
    assert [image.variant for image in record.images] == [0, 1]  # the grid and its one tile
    [tile] = [image for image in outcome.images if image.variant == 1]
    assert tile.png is not None
    drawn = from_png(tile.png).astype(int)
    # Half the schedule redrawn from pure red stays red; from noise, the embedded model's
    # red circle on a background is far from it.
    assert drawn[..., 0].mean() > drawn[..., 1].mean() + 60, drawn.mean(axis=(0, 1))
