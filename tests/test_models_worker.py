"""The worker's side of models and styles, on the embedded model: a catalog of two models it
switches between within its memory budget, LoRAs per batch (none: the base model's exact
pixels), LoRA files that do not fit failing their job while the worker serves the next, and the
A1111 ``parameters`` chunk in every PNG."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from generation.catalog import Catalog, EmbeddingFile, LoraFile, ModelEntry, Size
from generation.families import Family
from generation.images import from_image_file
from generation.models import model_defaults, resolve_model
from generation.options import GenerationOptions, LoraChoice
from generation.protocol import (
    CancelJob,
    LoadingModel,
    Progress,
    WorkBatch,
    WorkCancelled,
    WorkerSpec,
    WorkFailed,
    WorkRequest,
    WorkResult,
)
from generation.queue.batch import BatchPolicy, take_batch
from generation.queue.contract import QueuedJob
from generation.queue.fair import FairQueue
from generation.queue.redis import codec
from generation.supervisor import WorkerSupervisor
from moderation import watermark
from moderation.policy import ImagePolicy

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers and numpy 2
POLICY = ImagePolicy(threshold=0.99, strict_threshold=0.99)
INK = LoraChoice("ink")


def _entry(model_dir: Path, name: str) -> ModelEntry:
    source = resolve_model(str(model_dir))
    return ModelEntry(name, source, Family.SD1, model_defaults(source), (Size("1:1", 64, 64),))


def _options(**changes: Any) -> GenerationOptions:
    options = GenerationOptions("a red circle", "", (5,), 4, 3.0, 64, 64, "dpmpp")
    return dataclasses.replace(options, **changes)


def _request(job_id: int, **changes: Any) -> WorkRequest:
    return WorkRequest(job_id, _options(**changes), POLICY)


def _save_lora(
    folder: Path, name: str, model_dir: Path, change: Any = None, std: float = 1.0
) -> Path:
    """A LoRA for the embedded UNet made with PEFT (random, strong enough to show), saved in
    diffusers' format as ``pipe.load_lora_weights`` reads it; ``change`` edits its tensors."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet")
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets))
    for parameter_name, parameter in unet.named_parameters():
        if "lora_B" in parameter_name:
            torch.nn.init.normal_(parameter, std=std)
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    if change is None:
        StableDiffusionPipeline.save_lora_weights(folder, state, weight_name=f"{name}.safetensors")
    else:
        save_file(change({f"unet.{key}": value for key, value in state.items()}), folder / name)
    return folder / (name if change else f"{name}.safetensors")


def _wider(state: dict[str, Any]) -> dict[str, Any]:
    """Made for a text encoder 256 wide: its cross-attention projections take 256 inputs."""
    import torch

    wide = ("attn2.to_k.lora.down", "attn2.to_v.lora.down")
    return {
        key: torch.randn(value.shape[0], 256) if any(w in key for w in wide) else value
        for key, value in state.items()
    }


def _elsewhere(state: dict[str, Any]) -> dict[str, Any]:
    """Its own layers plus some in a block the model does not have."""
    import torch

    extra = "unet.down_blocks.7.attentions.0.transformer_blocks.0.attn1.to_q.lora"
    return {
        **state,
        f"{extra}.down.weight": torch.randn(4, 96),
        f"{extra}.up.weight": torch.randn(96, 4),
    }


def _nowhere(state: dict[str, Any]) -> dict[str, Any]:
    """Only layers the model does not have."""
    import torch

    return {"unet.nowhere.to_q.lora.down.weight": torch.randn(4, 8)} | {
        "unet.nowhere.to_q.lora.up.weight": torch.randn(8, 4)
    }


@pytest.fixture(scope="module")
def catalog(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    folder = tmp_path_factory.mktemp("loras")
    loras = [
        LoraFile("ink", _save_lora(folder, "ink", model_dir), 128),
        LoraFile("wide", _save_lora(folder, "wide.safetensors", model_dir, _wider), 256),
        LoraFile("elsewhere", _save_lora(folder, "e.safetensors", model_dir, _elsewhere), 128),
        LoraFile("nowhere", _save_lora(folder, "n.safetensors", model_dir, _nowhere), None),
        LoraFile("gone", folder / "gone.safetensors", 128),
    ]
    (folder / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    loras.append(LoraFile("corrupt", folder / "corrupt.safetensors", None))
    models = (_entry(model_dir, "embedded"), _entry(model_dir, "copy"))
    embeddings = (
        EmbeddingFile("azure", _save_embedding(folder, "azure", model_dir, 128), 128),
        EmbeddingFile("broad", _save_embedding(folder, "broad", model_dir, 256), 256),
    )
    return Catalog(models, "embedded", loras=tuple(loras), embeddings=embeddings)


def _save_embedding(folder: Path, token: str, model_dir: Path, width: int) -> Path:
    """A textual-inversion embedding in A1111's safetensors layout: the text encoder's own
    vector for "blue" (128 wide), or a vector for another encoder's width."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTokenizer

    encoder = CLIPTextModel.from_pretrained(model_dir / "text_encoder")
    [blue] = CLIPTokenizer.from_pretrained(model_dir / "tokenizer")("blue").input_ids[1:-1]
    vector = encoder.get_input_embeddings().weight[blue].detach().clone()
    vector = vector if width == vector.shape[0] else torch.randn(width)
    save_file({"emb_params": vector[None]}, folder / f"{token}.safetensors")
    return folder / f"{token}.safetensors"


class Outbox:
    """The worker's end of its pipe, in-process: what it sends, and the cancels it has read
    (``incoming``: read once the first denoising step is reported)."""

    def __init__(self, *incoming: CancelJob) -> None:
        self.sent: list[object] = []
        self.incoming = list(incoming)
        self.cancels: set[int] = set()

    def send(self, message: object) -> None:
        self.sent.append(message)
        if isinstance(message, Progress):
            self.cancels.update(cancel.job_id for cancel in self.incoming)
            self.incoming.clear()

    def cancelled(self, job_id: int) -> bool:
        return job_id in self.cancels

    def answered(self, job_ids: object) -> None:
        pass

    def answers(self) -> dict[int, WorkResult | WorkFailed | WorkCancelled]:
        kinds = WorkResult | WorkFailed | WorkCancelled
        return {m.job_id: m for m in self.sent if isinstance(m, kinds) and m.job_id is not None}


@pytest.fixture(scope="module")
def worker(model_dir: Path, catalog: Catalog) -> Any:
    """A worker with room for one model only: every switch loads."""
    from generation.model_pool import module_bytes
    from generation.worker import Worker

    spec = WorkerSpec(model=str(model_dir), device="cpu", torch_threads=1, catalog=catalog)
    worker = Worker(spec)
    [model] = worker.pool._loaded.values()
    worker.pool.budget_bytes = int(module_bytes(*model.runner.pipe.components.values()) * 1.5)
    return worker


def _run(worker: Any, *requests: WorkRequest) -> dict[int, WorkResult | WorkFailed | WorkCancelled]:
    outbox = Outbox()
    worker.process(WorkBatch(requests), outbox)
    return outbox.answers()


def _pixels(result: WorkResult | WorkFailed | WorkCancelled, variant: int = 1) -> np.ndarray:
    assert isinstance(result, WorkResult), result
    return from_image_file(result.post.images[variant - 1].png)


@pytest.fixture(scope="module")
def base_images(model_dir: Path) -> list[np.ndarray]:
    """The embedded model's own pictures, from a pipeline that never had a LoRA."""
    import torch

    from generation.loading import load_pipeline
    from generation.pipeline import PipelineRunner

    runner = PipelineRunner(load_pipeline(resolve_model(str(model_dir)), "cpu", torch.float32))
    [drawn] = runner.generate([_request(1, seeds=(5, 6))])
    return drawn.images


def test_the_worker_switches_models_within_its_budget_and_says_how_long_it_took(
    worker: Any,
) -> None:
    [default] = worker.pool._loaded.values()
    unet = weakref.ref(default.runner.pipe.unet)
    del default
    answers = _run(worker, _request(1, model="copy"))
    assert worker.pool.loaded == ("copy",)  # room for one: the default model went
    assert unet() is None  # and its weights with it
    loaded = answers[1]
    assert isinstance(loaded, WorkResult)
    assert loaded.model_load_ms > 0

    answers = _run(worker, _request(2, model="copy"), _request(3, model="copy"))
    assert [answers[2].model_load_ms, answers[3].model_load_ms] == [0, 0]  # type: ignore[union-attr]
    again = _run(worker, _request(1, model="embedded"))[1]
    assert isinstance(again, WorkResult)
    assert again.model_load_ms > 0
    assert worker.pool.loaded == ("embedded",)
    # The same weights under two names draw the same picture.
    assert np.array_equal(_pixels(again), _pixels(loaded))

    budget = worker.pool.budget_bytes
    worker.pool.budget_bytes *= 10  # room for both: the least recently used stays
    _run(worker, _request(5, model="copy"))
    assert worker.pool.loaded == ("embedded", "copy")
    assert _run(worker, _request(6, model="embedded"))[6].model_load_ms == 0  # type: ignore[union-attr]
    worker.pool.budget_bytes = 1  # smaller than any model: the one asked for still loads
    assert isinstance(_run(worker, _request(7, model="copy"))[7], WorkResult)
    assert worker.pool.loaded == ("copy",)
    worker.pool.budget_bytes = budget
    unknown = _run(worker, _request(8, model="nope"))[8]
    assert isinstance(unknown, WorkFailed)
    assert unknown.error == "model 'nope' is not in the worker's list (embedded, copy)"


def test_a_slow_model_load_keeps_the_worker_alive_until_it_is_done(
    worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a batch's model loads the worker says so every KEEP_ALIVE_S (the supervisor's
    stall timeout starts over on each), and stops before it sends anything else."""
    from generation import protocol

    monkeypatch.setattr(protocol, "KEEP_ALIVE_S", 0.01)
    outbox = Outbox()
    prepare = worker.pool.prepare

    def slow_prepare(*args: Any) -> Any:  # a load that lasts until the worker has spoken twice
        ceiling = time.monotonic() + 60
        while sum(isinstance(m, LoadingModel) for m in outbox.sent) < 2:
            assert time.monotonic() < ceiling, "no keep-alive within 60 s"
            time.sleep(0.01)
        return prepare(*args)

    monkeypatch.setattr(worker.pool, "prepare", slow_prepare)
    worker.process(WorkBatch((_request(31, model="copy"), _request(32, model="copy"))), outbox)
    loading = [m for m in outbox.sent if isinstance(m, LoadingModel)]
    assert loading[0] == LoadingModel((31, 32), "copy")
    first_other = next(i for i, m in enumerate(outbox.sent) if not isinstance(m, LoadingModel))
    assert all(not isinstance(m, LoadingModel) for m in outbox.sent[first_other:])
    assert isinstance(outbox.answers()[31], WorkResult)


def test_a_lora_changes_the_pixels_and_none_or_weight_0_gives_the_base_model_s(
    worker: Any, base_images: list[np.ndarray]
) -> None:
    model, _ = worker.pool.prepare("embedded", (INK,))
    runner = model.runner
    [styled] = runner.generate([_request(1, seeds=(5, 6), loras=(INK,))])
    [half] = runner.generate([_request(1, seeds=(5, 6), loras=(LoraChoice("ink", 0.5),))])
    [plain] = runner.generate([_request(1, seeds=(5, 6))])
    [zero] = runner.generate([_request(1, seeds=(5, 6), loras=(LoraChoice("ink", 0),))])
    for base, with_lora, halfway in zip(base_images, styled.images, half.images, strict=True):
        full_change = np.abs(with_lora.astype(int) - base).mean()
        assert full_change > 5
        assert 0 < np.abs(halfway.astype(int) - base).mean() < full_change
    for images in (plain.images, zero.images):
        assert all(np.array_equal(a, b) for a, b in zip(images, base_images, strict=True))
    # And after a batch without it, the LoRA is back as it was.
    [again] = runner.generate([_request(1, seeds=(5, 6), loras=(INK,))])
    assert all(np.array_equal(a, b) for a, b in zip(again.images, styled.images, strict=True))
    assert "ink" in model.lora_hashes


def test_jobs_with_other_loras_or_models_never_share_a_batch(worker: Any) -> None:
    queue: FairQueue[QueuedJob] = FairQueue()
    variants = [(), (INK,), (LoraChoice("ink", 0.5),), (INK,), ()]
    for job_id, loras in enumerate(variants, start=1):
        queue.push(QueuedJob(_request(job_id, loras=loras), 1, 1), guild=1, user=1)
    batches = []
    while batch := take_batch(queue, BatchPolicy(max_jobs=4)):
        batches.append(sorted(job.job_id for job in batch))
    assert sorted(batches) == [[1, 5], [2, 4], [3]]
    assert _request(1, model="copy").batch_key != _request(1).batch_key
    model, _ = worker.pool.prepare("embedded", (INK,))
    with pytest.raises(ValueError, match="a batch needs one model"):
        model.runner.generate([_request(1), _request(2, loras=(INK,))])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("unheard", "LoRA 'unheard' is not in the worker's list (ink, wide, "),
        ("gone", "LoRA 'gone' could not be read: "),
        ("corrupt", "LoRA 'corrupt' could not be read: "),
        (
            "wide",
            "LoRA 'wide' does not fit model 'embedded': down_blocks.1.attentions.0."
            "transformer_blocks.0.attn2.to_k.lora_A.wide.weight is [4, 256] in the file, "
            "[4, 128] in the model and 13 more",
        ),
        (
            "elsewhere",
            "LoRA 'elsewhere' does not fit model 'embedded': 1 of its layers is not in the "
            "model (such as down_blocks.7.",
        ),
        ("nowhere", "LoRA 'nowhere' does not fit model 'embedded': "),
    ],
)
def test_a_lora_that_cannot_be_used_fails_its_job_and_the_next_one_draws(
    worker: Any, base_images: list[np.ndarray], name: str, reason: str
) -> None:
    answers = _run(
        worker, _request(1, loras=(LoraChoice(name),)), _request(2, loras=(LoraChoice(name),))
    )
    for job_id in (1, 2):
        failed = answers[job_id]
        assert isinstance(failed, WorkFailed)
        assert failed.error.startswith(reason), failed.error
        assert "\n" not in failed.error
    model, _ = worker.pool.prepare("embedded")
    assert name not in model.runner.adapters
    # The model is as it was: the next job without LoRA draws the base pixels.
    [after] = model.runner.generate([_request(3, seeds=(5, 6))])
    assert all(np.array_equal(a, b) for a, b in zip(after.images, base_images, strict=True))
    assert isinstance(_run(worker, _request(4, loras=(INK,)))[4], WorkResult)


def test_every_png_carries_the_a1111_parameters_and_the_job(worker: Any, catalog: Catalog) -> None:
    options = {"negative_prompt": "blurry", "loras": (LoraChoice("ink", 0.8),), "model": "copy"}
    result = _run(worker, _request(41, seeds=(5, 6), **options))[41]
    assert isinstance(result, WorkResult)
    ink = next(lora for lora in catalog.loras if lora.name == "ink").path
    short = hashlib.sha256(ink.read_bytes()).hexdigest()[:12]
    assert result.post.grid is not None
    for image in (*result.post.images, result.post.grid):
        with Image.open(io.BytesIO(image.png)) as png:
            text = dict(png.text)  # type: ignore[attr-defined]
        assert text["sdbot-job"] == "41"
        seed = 5 if image.variant in (0, 1) else 6
        assert text["parameters"] == (
            "a red circle <lora:ink:0.8>\n"
            "Negative prompt: blurry\n"
            f"Steps: 4, Sampler: DPM++ 2M, CFG scale: 3, Seed: {seed}, Size: 64x64, "
            f'Model: copy, Lora hashes: "ink: {short}"'
        )
        # The text sits beside the pixels: the watermark still reads back.
        assert watermark.decode(from_image_file(image.png)) == image.watermark_id

    # Withheld pictures: their placeholders carry no text, a grid of placeholders only its job.
    flag_all = ImagePolicy(threshold=1e-9, strict_threshold=1e-9)
    withheld = _run(worker, WorkRequest(43, _options(seeds=(5, 6)), flag_all))[43]
    assert isinstance(withheld, WorkResult)
    assert all(image.withheld for image in withheld.post.images)
    for image in withheld.post.images:
        with Image.open(io.BytesIO(image.png)) as png:
            assert png.text == {}  # type: ignore[attr-defined]
    assert withheld.post.grid is not None
    with Image.open(io.BytesIO(withheld.post.grid.png)) as png:
        assert png.text == {"sdbot-job": "43"}  # type: ignore[attr-defined]

    upscale = _run(worker, _request(42, upscale=2))[42]
    assert isinstance(upscale, WorkResult)
    assert upscale.post.grid is None
    with Image.open(io.BytesIO(upscale.post.images[0].png)) as png:
        text = png.text["parameters"]  # type: ignore[attr-defined]
    assert text.endswith(
        "Size: 64x64, Model: embedded, Denoising strength: 0.35, Hires upscale: 2, "
        "Hires steps: 4, Hires upscaler: Lanczos"
    )


async def test_the_spawned_worker_switches_models_and_draws_with_a_lora(
    model_dir: Path, catalog: Catalog
) -> None:
    spec = WorkerSpec(model=str(model_dir), device="cpu", torch_threads=1, catalog=catalog)
    supervisor = WorkerSupervisor(spec)
    try:
        await supervisor.start()
        plain = await supervisor.run(_request(51))
        styled = await supervisor.run(_request(52, model="copy", loras=(INK,)))
        bad = await supervisor.run_batch(WorkBatch((_request(53, loras=(LoraChoice("wide"),)),)))
        after = await supervisor.run(_request(54, model="copy"))
    finally:
        await supervisor.close()
    assert plain.model_load_ms == 0
    assert styled.model_load_ms > 0
    assert np.abs(_pixels(styled).astype(int) - _pixels(plain)).mean() > 5
    assert isinstance(bad[53], WorkFailed)
    assert "does not fit model 'embedded'" in bad[53].error
    assert after.model_load_ms == 0
    assert np.abs(_pixels(after).astype(int) - _pixels(plain)).mean() < 2


def test_loras_and_notes_travel_through_the_redis_codec(worker: Any) -> None:
    request = _request(9, loras=(LoraChoice("ink", 0.8), LoraChoice("outline", -1)), model="m")
    back = codec.decode_request(codec.encode_request(request, "u"))
    assert back == request
    assert all(type(lora) is LoraChoice for lora in back.options.loras)
    assert back.options.loras[1].weight == -1.0
    assert type(back.options.loras[1].weight) is float

    result = _run(worker, _request(10, model="copy"))[10]
    assert isinstance(result, WorkResult)
    result = dataclasses.replace(result, notes=("prompt cut after 8 windows: 3 tokens dropped",))
    fields = codec.encode_result(result, "u")
    assert (
        codec.decode_result(
            {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}, "u"
        )
        == result
    )


def test_prompts_of_other_lengths_are_drawn_apart_and_a_cut_prompt_says_so(worker: Any) -> None:
    from generation.conditioning import MAX_CHUNKS

    short = _request(61, model="copy")
    long = _request(62, model="copy", prompt="a red circle " + "on a blue field " * 12)
    cut = _request(63, model="copy", prompt="a red circle " + "and a square " * 200)
    alone = _run(worker, _request(61, model="copy"))[61]
    answers = _run(worker, short, long, cut)
    assert all(isinstance(answer, WorkResult) for answer in answers.values())
    # Each prompt is padded to its own windows only: the short one draws as it does alone.
    assert np.array_equal(_pixels(answers[61]), _pixels(alone))
    assert answers[61].notes == answers[62].notes == ()  # type: ignore[union-attr]
    [note] = answers[63].notes  # type: ignore[union-attr]
    assert note.startswith(f"prompt cut after {MAX_CHUNKS} windows: ")
    assert note.endswith(" tokens dropped")


def test_embeddings_that_fit_the_text_encoder_are_used_by_their_token(worker: Any) -> None:
    model, _ = worker.pool.prepare("embedded")
    assert model.embeddings == ("azure",)  # "broad" was made for a 256-wide encoder
    [azure, blue, red] = [
        model.runner.generate([_request(1, prompt=f"a {colour} circle")])[0].images[0]
        for colour in ("azure", "blue", "red")
    ]
    assert np.array_equal(azure, blue)  # the token's vector is "blue"'s
    assert not np.array_equal(azure, red)


def test_a_cancel_read_while_another_group_draws_is_kept_for_its_own(worker: Any) -> None:
    short = _request(71, model="copy")
    long = _request(72, model="copy", prompt="a red circle " + "on a blue field " * 12)
    outbox = Outbox(CancelJob(72))  # read at the short prompt's first step
    worker.process(WorkBatch((short, long)), outbox)
    answers = outbox.answers()
    assert isinstance(answers[71], WorkResult)
    assert answers[72] == WorkCancelled(72, 0, 4)  # its own group is never drawn
    assert not any(isinstance(m, Progress) and m.job_id == 72 for m in outbox.sent)


SHIPPED = Path(__file__).resolve().parent.parent / "generation" / "embedded"


def test_the_shipped_lora_and_embedding_load_from_the_operators_catalog(model_dir: Path) -> None:
    """The catalog as the settings read it, with the LoRA and the embedding the project ships."""
    from generation.catalog import load_catalog
    from generation.worker import Worker

    catalog = load_catalog(
        str(model_dir), lora_dir=SHIPPED / "loras", embedding_dir=SHIPPED / "embeddings"
    )
    spec = WorkerSpec(model=str(model_dir), device="cpu", torch_threads=1, catalog=catalog)
    worker = Worker(spec)
    styled = _run(worker, _request(81, steps=20, loras=(LoraChoice("outline"),)))[81]
    zero = _run(worker, _request(81, steps=20, loras=(LoraChoice("outline", 0),)))[81]
    plain = _run(worker, _request(81, steps=20))[81]
    [model] = worker.pool._loaded.values()
    assert model.embeddings
    assert set(model.embeddings) == {embedding.token for embedding in catalog.embeddings}
    assert np.array_equal(_pixels(zero), _pixels(plain))
    assert np.abs(_pixels(styled).astype(int) - _pixels(plain)).mean() > 10  # 99 measured
    short = hashlib.sha256((SHIPPED / "loras" / "outline.safetensors").read_bytes()).hexdigest()
    assert isinstance(styled, WorkResult)
    with Image.open(io.BytesIO(styled.post.images[0].png)) as png:
        assert f'Lora hashes: "outline: {short[:12]}"' in png.text["parameters"]  # type: ignore[attr-defined]


def _sdxl_lora(folder: Path, pipe: Any) -> Path:
    """A LoRA for the tiny SDXL UNet (96-wide cross-attention), saved as SDXL's loader reads."""
    import torch
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    torch.manual_seed(0)
    unet = copy.deepcopy(pipe.unet)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_v"]))
    for parameter_name, parameter in unet.named_parameters():
        if "lora_B" in parameter_name:
            torch.nn.init.normal_(parameter, std=1.0)
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionXLPipeline.save_lora_weights(folder, state, weight_name="xl.safetensors")
    return folder / "xl.safetensors"


def _sdxl_embedding(folder: Path, pipe: Any) -> Path:
    """An SDXL embedding (``clip_l`` and ``clip_g``): each encoder's own vector for "blue"."""
    from safetensors.torch import save_file

    [blue] = pipe.tokenizer("blue").input_ids[1:-1]
    vectors = {
        key: encoder.get_input_embeddings().weight[blue].detach().clone()[None]
        for key, encoder in (("clip_l", pipe.text_encoder), ("clip_g", pipe.text_encoder_2))
    }
    save_file(vectors, folder / "azure.safetensors")
    return folder / "azure.safetensors"


def test_the_worker_draws_and_upscales_each_family_with_its_own_pipelines(
    model_dir: Path, catalog: Catalog, tmp_path: Path
) -> None:
    """SD 1.x (the embedded folder), SD 2.x and SDXL (tiny ones, as single files with their
    config folders) in one worker: each draws and upscales a prompt of two windows, SDXL takes
    a LoRA and an embedding made for it and refuses a LoRA made for SD 1.x."""
    from generation.models import ModelSource, SourceKind
    from generation.options import ModelDefaults
    from generation.worker import Worker
    from tests.tiny_families import SIDE, save, tiny_sd2, tiny_sdxl

    entries = [_entry(model_dir, "embedded")]
    xl = tiny_sdxl()
    for name, family, pipe in (("two", Family.SD2, tiny_sd2()), ("xl", Family.SDXL, xl)):
        folder, single = save(pipe, family, tmp_path)
        source = ModelSource(str(single), SourceKind.SINGLE_FILE)
        sizes = (Size("1:1", SIDE, SIDE),)
        entries.append(ModelEntry(name, source, family, ModelDefaults(), sizes, config=folder))
    ink = next(lora for lora in catalog.loras if lora.name == "ink")
    loras = (ink, LoraFile("xl", _sdxl_lora(tmp_path, xl), 96))
    embeddings = (EmbeddingFile("azure", _sdxl_embedding(tmp_path, xl), 32 + 64),)
    spec = WorkerSpec(
        model=str(model_dir),
        device="cpu",
        torch_threads=1,
        catalog=Catalog(tuple(entries), "embedded", loras=loras, embeddings=embeddings),
    )
    worker = Worker(spec)
    prompt = "a (red:1.2) circle " + "on a blue field " * 8
    for job_id, (name, side) in enumerate((("embedded", 64), ("two", SIDE), ("xl", SIDE)), 90):
        sized = {"width": side, "height": side, "prompt": prompt, "model": name}
        [drawn, upscaled] = [
            _run(worker, _request(job_id, upscale=factor, **sized))[job_id] for factor in (1, 2)
        ]
        assert isinstance(drawn, WorkResult), drawn
        assert isinstance(upscaled, WorkResult), upscaled
        with Image.open(io.BytesIO(upscaled.post.images[0].png)) as png:
            assert f"Model: {name}, Denoising strength: 0.35" in png.text["parameters"]  # type: ignore[attr-defined]
    xl_job = {"width": SIDE, "height": SIDE, "model": "xl"}
    plain = _run(worker, _request(95, **xl_job))[95]
    styled = _run(worker, _request(95, loras=(LoraChoice("xl"),), **xl_job))[95]
    assert not np.array_equal(_pixels(styled), _pixels(plain))
    # Its embedding holds each encoder's own vector for "blue": it draws as "blue" does.
    [azure, blue] = [
        _pixels(_run(worker, _request(97, prompt=f"a {word} circle", **xl_job))[97])
        for word in ("azure", "blue")
    ]
    assert np.array_equal(azure, blue)
    assert not np.array_equal(azure, _pixels(plain))
    refused = _run(worker, _request(96, loras=(INK,), **xl_job))[96]
    assert isinstance(refused, WorkFailed)
    assert refused.error.startswith("LoRA 'ink' does not fit model 'xl': "), refused.error
    assert np.array_equal(_pixels(_run(worker, _request(95, **xl_job))[95]), _pixels(plain))
