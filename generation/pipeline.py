"""The diffusers side: draw a batch on a loaded pipeline, from text (with a ControlNet or
not), from a picture (img2img), or from a picture with a mask (inpaint, a zoom out's canvas),
then an upscale's redraw; with the batch's LoRAs and our own prompt conditioning in every
pass. The other pipelines are made ``from_pipe``, sharing the loaded weights. Imported only by
the worker."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from generation.errors import InvalidOption, ModelLoadError
from generation.fast_path import FastPath, call_pipeline, fused_attention
from generation.fast_unet import FastUNet
from generation.options import UPSCALE_STRENGTH, GenerationOptions, LoraChoice
from generation.pictures_in import (
    Progress,
    Start,
    StepCallback,
    as_uint8,
    keep_unmasked,
    request_pictures,
    start_of,
    start_steps,
)
from generation.protocol import WorkRequest

log = logging.getLogger(__name__)

RGBArray = npt.NDArray[np.uint8]


def resolve_device(name: str) -> str:
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ModelLoadError(f"dtype must be one of auto, {', '.join(dtypes)}; got {name!r}")
    return dtypes[name]


@dataclass
class ModelSafetyChecker:
    """The model's own checker (diffusers' StableDiffusionSafetyChecker), run on final images.

    Inside the pipeline it would see the images before the upscale and black them out; taken
    out of the pipeline, it sees what will be posted and only reports.
    """

    checker: Any
    feature_extractor: Any
    device: str
    dtype: torch.dtype

    @classmethod
    def detach_from(cls, pipe: Any, device: str, dtype: torch.dtype) -> ModelSafetyChecker | None:
        checker = getattr(pipe, "safety_checker", None)
        extractor = getattr(pipe, "feature_extractor", None)
        if checker is None or extractor is None:
            return None
        pipe.safety_checker = None
        return cls(checker, extractor, device, dtype)

    def flags(self, images: list[RGBArray]) -> list[bool]:
        from PIL import Image

        inputs = self.feature_extractor(
            [Image.fromarray(image) for image in images], return_tensors="pt"
        ).to(self.device)
        arrays = np.stack([image.astype(np.float32) / 255 for image in images])
        with torch.inference_mode():
            _, flagged = self.checker(images=arrays, clip_input=inputs.pixel_values.to(self.dtype))
        return [bool(flag) for flag in flagged]


_SCHEDULER_CLASSES = {
    "dpmpp": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "ddim": "DDIMScheduler",
    "unipc": "UniPCMultistepScheduler",
    "pndm": "PNDMScheduler",
    "heun": "HeunDiscreteScheduler",
}


@dataclass(frozen=True)
class Drawn:
    """One request's pictures, and what its member should know about how they were drawn."""

    images: list[RGBArray]
    notes: tuple[str, ...] = ()


def cut_note(dropped: int, negative: bool = False) -> str:
    """The note for a prompt longer than ``MAX_CHUNKS`` windows of the text encoder."""
    from generation.conditioning import MAX_CHUNKS

    which = "negative prompt" if negative else "prompt"
    return f"{which} cut after {MAX_CHUNKS} windows: {dropped} tokens dropped"


@dataclass
class PipelineRunner:
    """Holds a loaded pipeline, its schedulers, the LoRA adapters loaded into it (by name), its
    ControlNets (by kind, loaded by the model pool) and its fast path (applied by the pool:
    generation.fast_path); one batch at a time."""

    pipe: Any
    adapters: set[str] = field(default_factory=set)
    controlnets: dict[str, Any] = field(default_factory=dict)
    fast: FastPath = field(default_factory=FastPath)

    def __post_init__(self) -> None:
        # A compiled UNet sees only these batch sizes (padded up), so it never recompiles.
        self.pad_sizes: tuple[int, ...] = self.fast.batch_sizes if self.fast.compile else ()
        self._schedulers: dict[str, Any] = {"default": self.pipe.scheduler}
        # img2img, inpaint and one per ControlNet kind: built when first needed, sharing the
        # pipeline's components (no second copy of the weights).
        self._pipelines: dict[str, Any] = {}

    def scheduler(self, name: str) -> Any:
        if name not in self._schedulers:
            import diffusers

            if name not in _SCHEDULER_CLASSES:
                raise InvalidOption(
                    "scheduler", name, "one of default, " + ", ".join(_SCHEDULER_CLASSES)
                )
            scheduler_class = getattr(diffusers, _SCHEDULER_CLASSES[name])
            # from_config keeps the model's prediction type, beta schedule and spacing.
            self._schedulers[name] = scheduler_class.from_config(self._schedulers["default"].config)
        return self._schedulers[name]

    def scheduler_name(self, name: str) -> str:
        """Our name for the scheduler ``name`` runs (``default``: the model's own, by class)."""
        if name != "default":
            return name
        kind = type(self._schedulers["default"]).__name__
        return next((key for key, cls in _SCHEDULER_CLASSES.items() if cls == kind), kind)

    def window_count(self, request: WorkRequest) -> int:
        """The text encoder windows the request's prompts take: requests batched together are
        padded to one count, so only requests with equal counts may share a pipeline call."""
        from generation.conditioning import window_count

        return window_count(self.pipe, request.options.prompt, request.options.negative_prompt)

    def use_loras(self, loras: Sequence[LoraChoice]) -> None:
        """Activates the batch's adapters with their weights, or none: a batch without LoRA
        (or with weight 0 only) runs the base layers alone, the base model's own pixels."""
        active = [lora for lora in loras if lora.weight != 0]
        if missing := [lora.name for lora in active if lora.name not in self.adapters]:
            raise ValueError(f"LoRA adapters not loaded: {', '.join(missing)}")
        fused_attention(self.pipe, fused=not active)  # adapters wrap the unfused projections
        if (fast := FastUNet.of(self.pipe.unet)) is not None:
            fast.eager = bool(active)  # a compiled graph would recompile for every weight
        if active:
            self.pipe.enable_lora()
            weights = [lora.weight for lora in active]
            self.pipe.set_adapters([lora.name for lora in active], weights)
        elif self.adapters:
            self.pipe.disable_lora()

    def generate(
        self, requests: Sequence[WorkRequest], on_step: StepCallback | None = None
    ) -> list[Drawn]:
        """The variants of each request as RGB arrays, in one pipeline call (a vary or a zoom
        out draws its sources in one call first; an upscale's redraw follows in another).

        The requests must share a batch key (model, size, steps, guidance, scheduler, LoRAs,
        start, strength, control); their prompts, negative prompts, seeds and pictures may
        differ. A request whose start lacks its pictures fails the call before any drawing.
        """
        from generation.conditioning import encode

        if len({request.batch_key for request in requests}) != 1:
            raise ValueError(
                "a batch needs one model, size, step count, guidance, LoRA set and start"
            )
        first = requests[0].options
        # 1. Each request's pictures, checked; one generator per image (in _draw): an image
        # depends on its seed and pictures, not on its batch.
        pictures = [request_pictures(request) for request in requests]
        seeds = [seed for request in requests for seed in request.options.seeds]
        prompts = [r.options.prompt for r in requests for _ in r.options.seeds]
        negatives = [r.options.negative_prompt for r in requests for _ in r.options.seeds]

        # 2. The scheduler the requests name (one instance per kind; each run resets its steps),
        # their LoRAs, and the prompts as embeddings (weights, long prompts, embeddings' tokens).
        self.pipe.scheduler = self.scheduler(first.scheduler)
        self.use_loras(first.loras)
        conditioning = encode(self.pipe, prompts, negatives)
        progress = Progress(on_step, self._plan(first))

        # 3. What each image starts from (a source drawn first), then 4. denoise and decode.
        with torch.inference_mode():
            sources = self._sources(requests, progress) if first.source is not None else None
            start = start_of(requests, pictures, sources)
            images = self._draw(first, conditioning.pipeline_kwargs(), seeds, start, progress)

        # 5. Split back per request, with its notes.
        drawn, begin = [], 0
        for request in requests:
            end = begin + len(request.options.seeds)
            notes = [cut_note(n) for n in conditioning.cut[begin:end][:1] if n]
            notes += [cut_note(n, True) for n in conditioning.negative_cut[begin:end][:1] if n]
            drawn.append(Drawn(images[begin:end], tuple(notes)))
            begin = end
        return drawn

    def draw_sources(self, requests: Sequence[WorkRequest]) -> list[RGBArray]:
        """Each request's source (a vary's or a zoom's): its own prompt and settings drawn at
        the source's seed and enlarged ``source.upscale`` times, as its parent drew it."""
        first = requests[0].options
        self.pipe.scheduler = self.scheduler(first.scheduler)
        self.use_loras(first.loras)
        with torch.inference_mode():
            return self._sources(requests, Progress(None, []))

    def _sources(self, requests: Sequence[WorkRequest], progress: Progress) -> list[RGBArray]:
        from generation.conditioning import encode

        sources = [request.options.source for request in requests]
        if any(source is None for source in sources) or sources[0] is None:
            raise ValueError("every request of a batch drawn from a source needs one")
        options = dataclasses.replace(
            requests[0].options, start="text", strength=1.0, source=None, control=None,
            upscale=sources[0].upscale,
        )  # fmt: skip
        prompts = [request.options.prompt for request in requests]
        negatives = [request.options.negative_prompt for request in requests]
        text = encode(self.pipe, prompts, negatives).pipeline_kwargs()
        seeds = [source.seed for source in sources if source is not None]
        return self._draw(options, text, seeds, Start(), progress)

    def _plan(self, options: GenerationOptions) -> list[int]:
        """The steps each pass of a batch is expected to run, in order."""
        name = options.scheduler
        plan = []
        if options.source is not None:
            plan.append(self._expected(name, options.steps))
            if options.source.upscale > 1:
                plan.append(self._expected(name, options.redraw_steps, UPSCALE_STRENGTH))
        if options.start == "text":
            plan.append(self._expected(name, options.steps))
        else:
            steps = start_steps(options.steps, options.strength)
            plan.append(self._expected(name, steps, options.strength))
        if options.upscale > 1:
            plan.append(self._expected(name, options.redraw_steps, UPSCALE_STRENGTH))
        return plan

    def _expected(self, name: str, steps: int, strength: float = 1.0) -> int:
        """The denoising steps diffusers runs for ``steps`` at ``strength`` (its timesteps
        from ``int(steps × strength)`` on; a multi-stage scheduler's stages each count)."""
        scheduler = self.scheduler(name)
        scheduler.set_timesteps(steps)
        total = len(scheduler.timesteps)
        skipped = steps - min(int(steps * strength), steps)
        return int(total - skipped * scheduler.order)

    def _pipeline(self, kind: str, control: str | None = None) -> Any:
        """The pipeline for ``kind`` (image: img2img, inpaint, or control: text with the
        ControlNet ``control``), made from this one's components the first time."""
        key = f"control:{control}" if kind == "control" else kind
        if key not in self._pipelines:
            from diffusers import (
                AutoPipelineForImage2Image,
                AutoPipelineForInpainting,
                AutoPipelineForText2Image,
            )

            if kind == "control":
                if control not in self.controlnets:
                    raise ValueError(f"ControlNet {control!r} is not loaded")
                made = AutoPipelineForText2Image.from_pipe(
                    self.pipe, controlnet=self.controlnets[control]
                )
            elif kind == "image":
                made = AutoPipelineForImage2Image.from_pipe(self.pipe)
            else:
                made = AutoPipelineForInpainting.from_pipe(self.pipe)
            made.set_progress_bar_config(disable=True)
            self._pipelines[key] = made
        return self._pipelines[key]

    def _draw(
        self,
        options: GenerationOptions,
        text: dict[str, Any],
        seeds: list[int],
        start: Start,
        progress: Progress,
    ) -> list[RGBArray]:
        """One pass over every image (from noise, a picture, or a picture and mask), then an
        upscale's redraw when ``options.upscale`` asks for one."""
        from PIL import Image

        def pil(arrays: list[Any]) -> list[Any]:
            return [Image.fromarray(array) for array in arrays]

        size = {"width": options.width, "height": options.height}
        extra: dict[str, Any]
        if start.images is None:  # from noise, held by a ControlNet or not
            pipe, extra = self.pipe, {"num_inference_steps": options.steps, **size}
            if start.controls is not None:
                pipe = self._pipeline("control", options.control)
                extra["image"] = pil(start.controls)
                extra["controlnet_conditioning_scale"] = options.control_scale
        else:
            steps = start_steps(options.steps, options.strength)
            extra = {"image": pil(start.images), "strength": options.strength}
            extra["num_inference_steps"] = steps
            if start.masks is None:
                pipe = self._pipeline("image")
            else:
                pipe = self._pipeline("inpaint")
                extra |= {"mask_image": pil(start.masks), **size}
        pipe.scheduler = self.scheduler(options.scheduler)
        output = call_pipeline(
            pipe,
            seeds,
            self.pad_sizes,
            **text,
            **extra,
            num_images_per_prompt=1,
            guidance_scale=options.guidance_scale,
            callback_on_step_end=progress.callback(),
        )
        progress.finished(pipe)
        images = [as_uint8(image) for image in output]
        if start.images is not None and start.masks is not None:
            images = [
                keep_unmasked(original, image, mask)
                for original, image, mask in zip(start.images, images, start.masks, strict=True)
            ]
        if options.upscale > 1:
            images = self._redraw(options, images, seeds, text, progress)
        return images

    def _redraw(
        self,
        options: GenerationOptions,
        images: list[RGBArray],
        seeds: list[int],
        text: dict[str, Any],
        progress: Progress,
    ) -> list[RGBArray]:
        """An upscale's second pass ("hires fix"): each picture enlarged with Lanczos, then
        partly re-noised and denoised again at that size, which adds the detail a plain
        resize cannot. The same model, LoRAs and prompt embeddings, through diffusers'
        image-to-image pipeline built on this one's components."""
        from PIL import Image

        pipe = self._pipeline("image")
        pipe.scheduler = self.scheduler(options.scheduler)
        size = (options.width * options.upscale, options.height * options.upscale)
        enlarged = [
            Image.fromarray(image).resize(size, Image.Resampling.LANCZOS) for image in images
        ]
        output = call_pipeline(
            pipe,
            seeds,
            self.pad_sizes,
            **text,
            image=enlarged,
            strength=UPSCALE_STRENGTH,
            num_inference_steps=options.redraw_steps,
            guidance_scale=options.guidance_scale,
            callback_on_step_end=progress.callback(),
        )
        progress.finished(pipe)
        return [as_uint8(image) for image in output]
