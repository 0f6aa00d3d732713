"""/describe's readings: the embedded model's scenes said back in its own words, and a BLIP
captioning model (a tiny one built here, random weights) loaded offline from a folder."""

from __future__ import annotations

import asyncio
import hashlib
import io
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from prometheus_client import REGISTRY

from bot.imagine.describe import Describer
from bot.imagine.inputs import InputChecker
from bot.imagine.outcomes import Refusal
from bot.imagine.types import Attachment, Requester
from bot.settings import Settings
from generation.describe import (
    MAX_PROMPTS,
    Captioner,
    CaptionModelError,
    NoShapeFound,
    describe_embedded,
    draws_scenes,
    is_embedded,
)
from generation.embedded.prompts import benchmark_cases
from generation.embedded.scenes import (
    PALETTE,
    canonical_caption,
    caption_vocabulary,
    render_scene,
    sample_scene,
)
from generation.errors import InvalidOption
from generation.models import EMBEDDED_MODEL_DIR
from generation.protocol import watermark_id
from storage import migrations
from storage.models import JobKind, JobStatus, Verdict
from storage.repositories import Storage

CAPTION_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "red", "blue"]
CAPTION_WORDS += ["circle", "square", "on", "background", "picture", "of", "the", "sky"]


def words_of(prompt: str) -> set[str]:
    return set(prompt.replace(",", " , ").split())


def test_a_red_circle_on_a_blue_background() -> None:
    picture = Image.new("RGB", (64, 64), PALETTE["blue"])
    ImageDraw.Draw(picture).ellipse((20, 20, 44, 44), fill=PALETTE["red"])
    prompts = describe_embedded(np.asarray(picture))
    assert prompts == (
        "a large red circle in the centre on a blue background",
        "a red circle in the centre on a blue background",
        "a large red circle on a blue background",
        "a red circle on a blue background",
    )


def test_any_size_is_read_at_the_models_own() -> None:
    picture = Image.new("RGB", (300, 200), PALETTE["white"])
    ImageDraw.Draw(picture).rectangle((10, 10, 60, 60), fill=PALETTE["green"])
    assert describe_embedded(np.asarray(picture))[3] == "a green square on a white background"


def test_twins_and_pairs_are_said_as_the_model_learned_them() -> None:
    picture = Image.new("RGB", (64, 64), PALETTE["yellow"])
    draw = ImageDraw.Draw(picture)
    for top in (4, 44):  # two small red circles, one at the top and one at the bottom
        draw.ellipse((26, top, 38, top + 12), fill=PALETTE["red"])
    prompts = describe_embedded(np.asarray(picture))
    assert prompts[0] == (
        "two small red circles, one at the bottom and one at the top, on a yellow background"
    )
    assert prompts[-1] == "two red circles on a yellow background"


def test_the_benchmark_scenes_read_back_in_the_models_words() -> None:
    """The model's own pictures (rendered scenes): the explicit prompt is the scene's canonical
    caption for most, every word of every prompt is one the model was trained on."""
    vocabulary = set(caption_vocabulary())
    rng = np.random.default_rng(18)
    exact = 0
    cases = benchmark_cases()
    for case in cases:
        prompts = describe_embedded(render_scene(case.scene, rng))
        assert 1 <= len(prompts) <= MAX_PROMPTS
        assert len(set(prompts)) == len(prompts)
        for prompt in prompts:
            assert words_of(prompt) <= vocabulary, prompt
        exact += prompts[0] == canonical_caption(case.scene)
    # A pair is said left to right, its canonical caption in the order it was written: the
    # single shapes and twins are what must match exactly (measured: 30 + 8 of 48).
    singles_and_twins = [c for c in cases if len(c.scene.objects) == 1 or c.scene.is_twin]
    assert exact >= len(singles_and_twins) - 3


def test_random_scenes_name_their_colours_and_shapes() -> None:
    rng = np.random.default_rng(7)
    named = 0
    for _ in range(60):
        scene = sample_scene(rng)
        said = describe_embedded(render_scene(scene, rng))[-1]  # colour and shape only
        named += all(f"{o.colour} {o.shape.value}" in said for o in scene.objects)
        assert said.endswith(f"on a {scene.background} background")
    assert named >= 54  # measured 57 of 60: a small circle is read as a square now and then


def test_a_plain_picture_has_no_shape() -> None:
    plain = np.full((64, 64, 3), PALETTE["purple"], dtype=np.uint8)
    with pytest.raises(NoShapeFound, match="plain purple background"):
        describe_embedded(plain)


def test_the_embedded_model_is_known_by_its_tokenizer(tmp_path: Path) -> None:
    assert is_embedded(str(EMBEDDED_MODEL_DIR))
    assert not is_embedded(str(tmp_path / "missing"))
    other = tmp_path / "other"
    (other / "tokenizer").mkdir(parents=True)
    (other / "model_index.json").write_text("{}")
    (other / "tokenizer" / "vocab.json").write_text('{"a": 0}')
    assert not is_embedded(str(other))
    from generation.catalog_files import single_model

    assert draws_scenes(single_model(str(EMBEDDED_MODEL_DIR)))


def tiny_blip(folder: Path) -> Path:
    """A BLIP captioner with random weights and a 17-word vocabulary, saved as a real one is."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(CAPTION_WORDS) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    processor = BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer)
    small = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1}
    config = BlipConfig(
        text_config={
            **small,
            "num_attention_heads": 2,
            "vocab_size": len(CAPTION_WORDS),
            "encoder_hidden_size": 32,
            "max_position_embeddings": 64,
            "bos_token_id": CAPTION_WORDS.index("[DEC]"),
            "sep_token_id": CAPTION_WORDS.index("[SEP]"),
            "eos_token_id": CAPTION_WORDS.index("[SEP]"),
            "pad_token_id": 0,
        },
        vision_config={**small, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=32,
        image_text_hidden_size=32,
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_a_blip_folder_captions_offline_the_same_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tiny_blip(tmp_path / "blip")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    captioner = Captioner(folder)
    picture = np.zeros((48, 80, 3), dtype=np.uint8)
    picture[10:30, 20:50] = PALETTE["red"]
    captions = captioner.captions(picture)
    assert 1 <= len(captions) <= MAX_PROMPTS
    assert len(set(captions)) == len(captions)
    for caption in captions:
        assert isinstance(caption, str)
        assert caption
        assert set(caption.split()) <= set(CAPTION_WORDS[5:]), caption  # words, no markers
    assert captioner.captions(picture) == captions
    assert Captioner(folder).captions(picture) == captions  # loaded again: the same beams
    assert len(captioner.captions(picture, count=2)) <= 2


def test_a_folder_that_is_no_blip_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(CaptionModelError, match=r"SDBOT_CAPTION_MODEL: .* is not a folder"):
        Captioner(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptionModelError, match="not a BLIP captioning model folder"):
        Captioner(tmp_path / "empty")


# --- /describe through the bot's rooms: a real SQLite file, the real checker ------------------


def png_of(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def red_circle_on_blue() -> np.ndarray:
    picture = Image.new("RGB", (64, 64), PALETTE["blue"])
    ImageDraw.Draw(picture).ellipse((20, 20, 44, 44), fill=PALETTE["red"])
    return np.asarray(picture)


def models_file(tmp_path: Path, model_dir: Path) -> Path:
    """The embedded model, and "other": the same weights under a tokenizer of other words (a
    model the scene analyser cannot speak for)."""
    other = tmp_path / "other"
    other.mkdir()
    for part in model_dir.iterdir():
        if part.name != "tokenizer":
            (other / part.name).symlink_to(part)
    shutil.copytree(model_dir / "tokenizer", other / "tokenizer")
    vocab = other / "tokenizer" / "vocab.json"
    vocab.write_text(vocab.read_text() + "\n")
    path = tmp_path / "models.toml"
    path.write_text(
        f'[[model]]\nname = "embedded"\nsource = "{model_dir}"\ndefault = true\n\n'
        f'[[model]]\nname = "other"\nsource = "{other}"\n'
    )
    return path


@asynccontextmanager
async def describer(
    settings: Settings, caption_model: Path | None = None
) -> AsyncIterator[tuple[Describer, Storage]]:
    from bot.app import open_service, open_storage

    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url())
    async with open_storage(settings) as storage, open_service(settings, storage) as service:
        checker = InputChecker(
            storage, max_bytes=service.config.max_input_bytes, max_pixels=10_000_000
        )
        yield (
            Describer(
                storage,
                checker,
                service.config.catalog,
                admission=service.admission,
                caption_model=caption_model,
            ),
            storage,
        )


USER = Requester(source="discord", guild_id=7, channel_id=70, user_id=700)


async def test_describe_records_a_job_with_its_picture(settings: Settings) -> None:
    data = png_of(red_circle_on_blue())
    async with describer(settings) as (reader, storage):
        described = await reader.describe(Attachment(data, "circle.png"), USER)
        assert described.error is None
        assert described.prompts[0] == "a large red circle in the centre on a blue background"
        assert described.prompts[-1] == "a red circle on a blue background"
        assert described.sha256 == hashlib.sha256(data).hexdigest()
        assert described.model == "embedded"
        record = await storage.audit.get_job(described.job_id)
        assert record is not None
        assert (record.kind, record.status) == (JobKind.DESCRIBE, JobStatus.SUCCEEDED)
        assert record.prompt == described.prompts[0]
        assert (record.width, record.height, record.variants) == (64, 64, 0)
        [given] = record.inputs
        assert (given.role, given.sha256, given.format) == ("image", described.sha256, "PNG")
        assert given.nsfw_score is not None
        assert given.nsfw_score == described.nsfw_score

        plain = png_of(np.full((64, 64, 3), PALETTE["green"], dtype=np.uint8))
        nothing = await reader.describe(Attachment(plain, "plain.png"), USER)
        assert nothing.prompts == ()
        assert nothing.error is not None
        assert "no shape found" in nothing.error
        failed = await storage.audit.get_job(nothing.job_id)
        assert failed is not None
        assert (failed.status, failed.error) == (JobStatus.FAILED, nothing.error)


async def test_an_sdbot_picture_names_the_job_that_made_it(settings: Settings) -> None:
    from moderation.watermark import embed
    from storage.records import NewJob

    async with describer(settings) as (reader, storage):
        made = NewJob("cli", "a red circle", "", 20, 3.0, 64, 64, 1, "dpmpp", "embedded", (1,),
                      Verdict.ALLOWED)  # fmt: skip
        job_id = await storage.audit.create_job(made)
        marked = embed(np.asarray(Image.fromarray(red_circle_on_blue()).resize((256, 256))),
                       watermark_id(job_id, 1))  # fmt: skip
        assert marked.verified
        described = await reader.describe(Attachment(png_of(marked.rgb), "mine.png"), USER)
        assert described.parent_job_id == job_id
        record = await storage.audit.get_job(described.job_id)
        assert record is not None
        assert record.inputs[0].parent_job_id == job_id
        assert record.inputs[0].watermark_id == watermark_id(job_id, 1)


def _refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("sdbot_refusals_total", {"reason": reason}) or 0.0


async def test_refused_pictures_are_recorded_and_bad_files_are_not(settings: Settings) -> None:
    async with describer(settings) as (reader, storage):
        gif = io.BytesIO()
        Image.fromarray(red_circle_on_blue()).save(gif, format="GIF")
        with pytest.raises(InvalidOption, match="GIF"):
            await reader.describe(Attachment(gif.getvalue(), "cat.gif"), USER)
        assert await storage.audit.list_jobs() == []

        # A server whose threshold flags everything: the picture may not be used outside an
        # age-restricted channel, and its refusal keeps its hash and score.
        await storage.guild_settings.update(7, nsfw_threshold=1e-9)
        data = png_of(red_circle_on_blue())
        inputs_refused = _refusals("input")
        refused = await reader.describe(Attachment(data, "circle.png"), USER)
        assert refused.refusal is Refusal.INPUT
        assert _refusals("input") == inputs_refused + 1  # sdbot_refusals_total{reason}
        assert refused.prompts == ()
        assert refused.error is not None
        assert "scored NSFW" in refused.error
        record = await storage.audit.get_job(refused.job_id)
        assert record is not None
        assert (record.kind, record.status) == (JobKind.DESCRIBE, JobStatus.REFUSED)
        assert record.inputs[0].sha256 == hashlib.sha256(data).hexdigest()
        assert record.inputs[0].nsfw_score == refused.nsfw_score

        # Banned: the gate first, as for /imagine.
        await storage.bans.ban(7, 700, banned_by=1, reason="spam")
        banned = await reader.describe(Attachment(data, "circle.png"), USER)
        assert banned.refusal is Refusal.BANNED


async def test_other_models_need_a_captioning_model(
    settings: Settings, model_dir: Path, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"models_file": models_file(tmp_path, model_dir)})
    data = png_of(red_circle_on_blue())
    async with describer(settings) as (reader, storage):
        with pytest.raises(InvalidOption, match="SDBOT_CAPTION_MODEL") as refused:
            await reader.describe(Attachment(data, "circle.png"), USER, model="other")
        assert refused.value.option == "model"
        assert await storage.audit.list_jobs() == []
        with pytest.raises(InvalidOption, match="model must be one of embedded, other"):
            await reader.describe(Attachment(data, "circle.png"), USER, model="sd99")
    blip = tiny_blip(tmp_path / "blip")
    async with describer(settings, caption_model=blip) as (reader, storage):
        first = await reader.describe(Attachment(data, "circle.png"), USER, model="other")
        again = await reader.describe(Attachment(data, "circle.png"), USER, model="other")
        assert first.prompts == again.prompts
        assert first.prompts
        assert all(set(p.split()) <= set(CAPTION_WORDS) for p in first.prompts)
        assert first.model == "other"
        record = await storage.audit.get_job(first.job_id)
        assert record is not None
        assert (record.model, record.prompt) == ("other", first.prompts[0])
        embedded = await reader.describe(Attachment(data, "circle.png"), USER)
        assert embedded.prompts[-1] == "a red circle on a blue background"
