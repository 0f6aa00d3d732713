"""The worker's side of pictures in, on the embedded model: img2img redraws as much as its
strength says, an inpaint keeps what its mask keeps, a zoom out draws its source again and the
border around it, a vary draws its parent's tile again and varies it, a ControlNet holds the
drawing by its picture and scale; requests in one batch keep their own pictures; a request
without the pictures its start needs fails alone through the real worker, which serves on."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from generation.catalog import Catalog, ModelEntry, Size
from generation.families import Family
from generation.images import from_image_file
from generation.inputs import fit, outpaint_canvas, png_bytes
from generation.models import model_defaults, resolve_model
from generation.options import GenerationOptions
from generation.protocol import (
    InputImages,
    WorkBatch,
    WorkCancelled,
    WorkerSpec,
    WorkFailed,
    WorkRequest,
    WorkResult,
)
from generation.starts import Source
from moderation.policy import ImagePolicy

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers and numpy 2
POLICY = ImagePolicy(threshold=0.99, strict_threshold=0.99)
PROMPT = "a red circle on a blue background"


def _options(**changes: Any) -> GenerationOptions:
    options = GenerationOptions(PROMPT, "", (5,), 8, 3.0, 64, 64, "default", model="embedded")
    return dataclasses.replace(options, **changes)


def _request(job_id: int, inputs: InputImages | None = None, **changes: Any) -> WorkRequest:
    return WorkRequest(job_id, _options(**changes), POLICY, inputs)


def _image(picture: np.ndarray) -> InputImages:
    return InputImages(image=png_bytes(picture))


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


class Steps:
    """The progress a runner reports: every total the same, the steps 1, 2, … up to it."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def __call__(self, step: int, total: int) -> None:
        self.seen.append((step, total))

    def counted(self) -> int:
        total = self.seen[-1][1]
        assert self.seen == [(step, total) for step in range(1, total + 1)], self.seen
        return total


def _controlnet(unet: Any, folder: Path, levels: tuple[int, ...]) -> Path:
    """An untrained ControlNet of ``unet`` (diffusers' ``from_unet``) whose zero convolutions
    are given random weights, the last of its picture's embedding strong ones: zeros would add
    nothing, and a test could not tell a ControlNet used from one ignored."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=levels)
    with torch.no_grad():
        for name, parameter in controlnet.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
                parameter.normal_(0, 0.1)
            elif name.startswith("controlnet_cond_embedding.conv_out"):
                parameter.normal_(0, 3.0)
    controlnet.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def catalog(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet")
    # The embedded VAE halves the side twice (64 px, 16×16 latents): so does the ControlNet.
    folder = _controlnet(unet, tmp_path_factory.mktemp("controlnet") / "canny", (16, 32, 96))
    source = resolve_model(str(model_dir))
    sizes = (Size("1:1", 64, 64),)
    entries = (
        ModelEntry(
            "embedded", source, Family.SD1, model_defaults(source), sizes,
            controlnets=(("canny", folder),),
        ),
        ModelEntry("plain", source, Family.SD1, model_defaults(source), sizes),
    )  # fmt: skip
    return Catalog(entries, "embedded")


@pytest.fixture(scope="module")
def worker(model_dir: Path, catalog: Catalog) -> Any:
    from generation.worker import Worker

    return Worker(WorkerSpec(model=str(model_dir), device="cpu", torch_threads=1, catalog=catalog))


@pytest.fixture(scope="module")
def runner(worker: Any) -> Any:
    model, _ = worker.pool.prepare("embedded")
    return model.runner


@pytest.fixture(scope="module")
def base(runner: Any) -> np.ndarray:
    """The picture the img2img and inpaint tests start from: the prompt drawn at seed 5."""
    [drawn] = runner.generate([_request(1)])
    image: np.ndarray = drawn.images[0]
    return image


def test_img2img_redraws_as_much_as_its_strength_says(runner: Any, base: np.ndarray) -> None:
    changes, counts = {}, {}
    for strength in (0.05, 0.3, 1.0):
        steps = Steps()
        request = _request(2, _image(base), start="image", strength=strength, seeds=(9,))
        [drawn] = runner.generate([request], steps)
        changes[strength], counts[strength] = _diff(drawn.images[0], base), steps.counted()
    assert changes[0.05] < changes[0.3] < 3 < 10 < changes[1.0]
    # diffusers runs int(steps × strength): 8 × 0.3 → 2; 8 × 0.05 would be none, so its
    # schedule is lengthened until one step runs.
    assert counts == {0.05: 1, 0.3: 2, 1.0: 8}
    again = _request(3, _image(base), start="image", strength=0.3, seeds=(9, 10))
    [first, second] = [runner.generate([again])[0].images for _ in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], first[1])  # its own seed's noise each


def test_requests_batched_together_keep_their_own_pictures(runner: Any, base: np.ndarray) -> None:
    [other] = runner.generate([_request(1, prompt="a yellow square on a green background")])
    one = _request(4, _image(base), start="image", strength=0.6, seeds=(9, 10))
    two = _request(5, _image(other.images[0]), start="image", strength=0.6, seeds=(11,))
    together = runner.generate([one, two])
    alone = [runner.generate([request])[0] for request in (one, two)]
    for batched, single in zip(together, alone, strict=True):
        for a, b in zip(batched.images, single.images, strict=True):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # CPU batch rounding
    assert _diff(together[0].images[0], base) < _diff(together[0].images[0], other.images[0])
    assert _diff(together[1].images[0], other.images[0]) < _diff(together[1].images[0], base)


def test_an_inpaint_redraws_the_mask_and_keeps_the_rest(runner: Any, base: np.ndarray) -> None:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[:, :32] = 255  # the left half is redrawn
    inputs = InputImages(image=png_bytes(base), mask=png_bytes(mask))
    steps = Steps()
    yellow = "a red circle on a yellow background"
    request = _request(6, inputs, start="inpaint", strength=1.0, seeds=(9,), prompt=yellow)
    [drawn] = runner.generate([request], steps)
    image = drawn.images[0]
    assert np.array_equal(image[:, 40:], base[:, 40:])  # kept as it was, beyond the feather
    assert _diff(image[:, :28], base[:, :28]) > 20
    assert image[:, :28, 1].mean() > base[:, :28, 1].mean() + 40  # yellow: green rose
    assert steps.counted() == 8
    full = runner.generate([request])[0].images[0]
    assert np.array_equal(full, image)


def test_a_zoom_out_draws_its_source_again_and_the_border_around_it(runner: Any) -> None:
    [upscaled] = runner.generate([_request(7, upscale=2)])  # the parent: seed 5, upscaled
    parent = upscaled.images[0]
    zoom = _request(8, start="outpaint", strength=1.0, source=Source(5, 2), seeds=(21, 22))
    [source] = runner.draw_sources([zoom])
    assert np.array_equal(source, parent)  # drawn again exactly as the parent drew it
    steps = Steps()
    [drawn] = runner.generate([zoom], steps)
    # Its source's text pass (8), that pass's redraw (int(8 × 0.35) = 2), the inpaint (8).
    assert steps.counted() == 18
    centre = fit(parent, 32, 32)
    canvas, mask = outpaint_canvas(parent, 64, 64, 2)
    for image in drawn.images:
        assert image.shape == (64, 64, 3)
        assert _diff(image[18:46, 18:46], centre[2:30, 2:30]) < 1  # the parent, shrunk
        border = mask == 255
        assert _diff(image[border], canvas[border]) > 2  # drawn, not the edge colours repeated
    first, second = drawn.images
    assert _diff(first[mask == 255], second[mask == 255]) > 2  # each seed draws its own


def test_a_vary_draws_its_parent_s_tile_again_then_varies_it(runner: Any) -> None:
    [grid] = runner.generate([_request(9, seeds=(5, 6, 7, 8))])
    [alone] = runner.generate([_request(9, seeds=(6,))])
    tile = alone.images[0]
    assert np.abs(grid.images[1].astype(int) - tile).max() <= 2  # CPU batch rounding
    subtle = _request(10, start="image", strength=0.35, source=Source(6), seeds=(11, 12, 13, 14))
    strong = dataclasses.replace(subtle, options=dataclasses.replace(subtle.options, strength=0.7))
    assert np.array_equal(runner.draw_sources([subtle])[0], tile)
    steps = Steps()
    [varied] = runner.generate([subtle], steps)
    assert steps.counted() == 8 + 2  # the tile drawn again, then int(8 × 0.35) steps
    [further] = runner.generate([strong])
    near = [_diff(image, tile) for image in varied.images]
    far = [_diff(image, tile) for image in further.images]
    assert 0 < np.mean(near) < 2.5 < np.mean(far)
    assert len({image.tobytes() for image in varied.images}) == 4


def _outline(left: int, top: int, side: int) -> np.ndarray:
    """A control picture: a white square on black (an untrained ControlNet barely sees thin
    edges; a trained one is measured in tests/embedded/test_controlnet.py)."""
    picture = np.zeros((64, 64, 3), dtype=np.uint8)
    picture[top : top + side, left : left + side] = 255
    return picture


def test_a_controlnet_holds_the_drawing_by_its_picture_and_scale(
    worker: Any, runner: Any, base: np.ndarray
) -> None:
    from generation.model_pool import module_bytes

    model, _ = worker.pool.prepare("embedded", (), "canny")
    controlnet = runner.controlnets["canny"]
    assert worker.pool.prepare("embedded", (), "canny")[0].runner.controlnets["canny"] is controlnet
    assert model.bytes == module_bytes(*runner.pipe.components.values(), controlnet)
    left = InputImages(control=png_bytes(_outline(4, 4, 24)))
    right = InputImages(control=png_bytes(_outline(36, 36, 24)))

    def draw(inputs: InputImages, scale: float) -> np.ndarray:
        request = _request(11, inputs, control="canny", control_scale=scale)
        image: np.ndarray = runner.generate([request])[0].images[0]
        return image

    assert np.array_equal(draw(left, 0.0), base)  # at scale 0 it adds nothing
    held = draw(left, 1.0)
    assert np.array_equal(draw(left, 1.0), held)
    assert 0 < _diff(draw(left, 0.5), base) < _diff(held, base) < _diff(draw(left, 2.0), base)
    assert _diff(held, base) > 3
    assert _diff(draw(right, 1.0), held) > 0.1  # its picture, not only its weights, counts


def test_an_sdxl_pipeline_draws_from_pictures_too(tmp_path: Path) -> None:
    """SDXL's img2img, inpaint and ControlNet pipelines (diffusers' own, ``from_pipe``) take
    our conditioning with its pooled embeds; a tiny SDXL (32 px, 16×16 latents)."""
    from generation.loading import load_controlnet
    from generation.pipeline import PipelineRunner
    from tests.tiny_families import SIDE, tiny_sdxl

    xl = tiny_sdxl()
    xl.set_progress_bar_config(disable=True)
    runner = PipelineRunner(xl)
    folder = _controlnet(xl.unet, tmp_path / "canny", (8, 16))
    runner.controlnets["canny"] = load_controlnet(folder, "cpu", xl.unet.dtype)
    sized: dict[str, Any] = {"width": SIDE, "height": SIDE, "steps": 4, "model": "xl"}
    [text] = runner.generate([_request(12, **sized)])
    mask = np.zeros((SIDE, SIDE), dtype=np.uint8)
    mask[:, : SIDE // 2] = 255
    picture = InputImages(image=png_bytes(text.images[0]), mask=png_bytes(mask))
    outline = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
    outline[4:12, 4:12] = 255
    requests = [
        _request(13, start="image", strength=0.5, source=Source(5), **sized),
        _request(14, picture, start="inpaint", **sized),
        _request(15, start="outpaint", source=Source(5, 2), **sized),
        _request(16, InputImages(control=png_bytes(outline)), control="canny", **sized),
    ]
    for request in requests:
        [drawn] = runner.generate([request])
        assert drawn.images[0].shape == (SIDE, SIDE, 3)
        assert not np.array_equal(drawn.images[0], text.images[0]), request.options.start


class Outbox:
    """The worker's end of its pipe, in-process: what it sends."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, message: object) -> None:
        self.sent.append(message)

    def poll(self) -> bool:
        return False

    def answers(self) -> dict[int, WorkResult | WorkFailed | WorkCancelled]:
        kinds = WorkResult | WorkFailed | WorkCancelled
        return {m.job_id: m for m in self.sent if isinstance(m, kinds) and m.job_id is not None}


def _run(worker: Any, *requests: WorkRequest) -> dict[int, WorkResult | WorkFailed | WorkCancelled]:
    outbox = Outbox()
    worker.process(WorkBatch(requests), outbox)
    return outbox.answers()


def _parameters(result: WorkResult | WorkFailed | WorkCancelled, variant: int = 0) -> str:
    assert isinstance(result, WorkResult), result
    image = result.post.grid if variant == 0 else result.post.images[variant - 1]
    assert image is not None
    with Image.open(io.BytesIO(image.png)) as png:
        text: str = png.text["parameters"]  # type: ignore[attr-defined]
    return text


def test_the_worker_fails_a_request_without_its_pictures_alone_and_serves_on(
    worker: Any, base: np.ndarray
) -> None:
    image: dict[str, Any] = {"start": "image", "strength": 0.6}
    small = InputImages(image=png_bytes(base[:32, :32]))
    answers = _run(
        worker,
        _request(21, _image(base), seeds=(5, 6), **image),
        _request(22, **image),  # neither a picture nor a source
        _request(23, small, **image),
        _request(24, InputImages(image=b"GIF89a"), **image),
    )
    assert isinstance(answers[21], WorkResult)
    assert answers[21].post.grid is not None  # an img2img posts a grid, as a drawing does
    assert "Denoising strength: 0.6" in _parameters(answers[21])
    assert [answers[job].error for job in (22, 23)] == [  # type: ignore[union-attr]
        "image must be given for a job that starts from image (a picture or the source it is "
        "drawn from), got None",
        "image must be the job's size, 64x64, got '32x32'",
    ]
    assert answers[24].error.startswith("image must be a RGB PNG (")  # type: ignore[union-attr]
    edit = _run(worker, _request(25, _image(base), start="inpaint"))[25]
    assert isinstance(edit, WorkFailed)
    assert edit.error.startswith("mask must be given for a job that starts from inpaint")
    unheld = _run(worker, _request(26, control="canny"))[26]
    assert isinstance(unheld, WorkFailed)
    assert unheld.error.startswith("control must be given for a job that starts from text")
    lacking = _run(worker, _request(27, _outline_inputs(), model="plain", control="canny"))[27]
    assert isinstance(lacking, WorkFailed)
    assert lacking.error == "model 'plain' has no canny ControlNet (it has: none)"

    # And it serves on: a vary of an upscale (its tile drawn, varied, redrawn twice as large),
    # and a drawing held by the ControlNet, with what they were drawn with in their PNGs.
    vary = _request(28, start="image", strength=0.35, source=Source(6), upscale=2)
    [varied] = _run(worker, vary).values()
    assert isinstance(varied, WorkResult)
    assert varied.post.grid is None
    text = _parameters(varied, 1)
    assert "Denoising strength: 0.35, Hires denoising strength: 0.35, Hires upscale: 2" in text
    held = _run(worker, _request(29, _outline_inputs(), control="canny", control_scale=0.8))[29]
    assert 'ControlNet 0: "Module: canny, Weight: 0.8"' in _parameters(held)
    assert "Denoising strength" not in _parameters(held)


def _outline_inputs() -> InputImages:
    return InputImages(control=png_bytes(_outline(8, 8, 32)))


def test_an_edit_and_a_zoom_out_are_posted_as_grids_checked_and_marked(
    worker: Any, base: np.ndarray
) -> None:
    """Their variants are checked, marked and gridded as any drawing's."""
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    edit = _request(31, InputImages(image=png_bytes(base), mask=png_bytes(mask)), start="inpaint")
    zoom = _request(32, start="outpaint", source=Source(5, 2), seeds=(1, 2, 3, 4))
    for answer in (_run(worker, edit)[31], _run(worker, zoom)[32]):
        assert isinstance(answer, WorkResult), answer
        assert answer.post.grid is not None
        for image in answer.post.images:
            assert image.watermark_verified
            assert from_image_file(image.png).shape[:2] == (image.height, image.width)
