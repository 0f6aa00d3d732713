"""The diffusers side: run text-to-image (and an upscale's redraw) on a loaded pipeline, with
the batch's LoRAs and our own prompt conditioning. Imported only by the worker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from generation.errors import InvalidOption, ModelLoadError
from generation.options import UPSCALE_STRENGTH, LoraChoice
from generation.protocol import WorkRequest

log = logging.getLogger(__name__)

RGBArray = npt.NDArray[np.uint8]
StepCallback = Callable[[int, int], None]


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
    """Holds a loaded pipeline, its schedulers and the LoRA adapters loaded into it (by name);
    one batch at a time."""

    pipe: Any
    adapters: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._schedulers: dict[str, Any] = {"default": self.pipe.scheduler}
        self._img2img: Any = None  # built on first upscale, sharing the pipeline's components

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
        if active:
            self.pipe.enable_lora()
            weights = [lora.weight for lora in active]
            self.pipe.set_adapters([lora.name for lora in active], weights)
        elif self.adapters:
            self.pipe.disable_lora()

    def generate(
        self, requests: Sequence[WorkRequest], on_step: StepCallback | None = None
    ) -> list[Drawn]:
        """The variants of each request as RGB arrays, in one pipeline call.

        The requests must share a batch key (model, size, steps, guidance, scheduler, LoRAs);
        their prompts, negative prompts and seeds may differ.
        """
        from generation.conditioning import encode

        if len({request.batch_key for request in requests}) != 1:
            raise ValueError("a batch needs one model, size, step count, guidance and LoRA set")
        first = requests[0].options
        # 1. One generator per image: an image depends on its seed, not on its batch.
        seeds = [seed for request in requests for seed in request.options.seeds]
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        prompts = [r.options.prompt for r in requests for _ in r.options.seeds]
        negatives = [r.options.negative_prompt for r in requests for _ in r.options.seeds]

        # 2. The scheduler the requests name (one instance per kind; each run resets its steps),
        # their LoRAs, and the prompts as embeddings (weights, long prompts, embeddings' tokens).
        self.pipe.scheduler = self.scheduler(first.scheduler)
        self.use_loras(first.loras)
        conditioning = encode(self.pipe, prompts, negatives)
        text = conditioning.pipeline_kwargs()
        refine = first.refine_steps  # an upscale: a redraw at the larger size follows

        def step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if on_step is not None:  # multi-stage schedulers (Heun) run more than `steps`
                on_step(step + 1, pipe.num_timesteps + refine)
            return kwargs

        # 3. Denoise and decode.
        with torch.inference_mode():
            output = self.pipe(
                **text,
                num_images_per_prompt=1,
                num_inference_steps=first.steps,
                guidance_scale=first.guidance_scale,
                width=first.width,
                height=first.height,
                generator=generators,
                output_type="pil" if refine else "np",
                callback_on_step_end=step_end,
            )
            pictures = output.images
            if refine:
                pictures = self._redraw(requests, pictures, seeds, text, on_step)

        # 4. Float [0, 1] to uint8 RGB, split back per request with its notes.
        images = [
            np.ascontiguousarray((np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8))
            for image in pictures
        ]
        drawn, start = [], 0
        for request in requests:
            end = start + len(request.options.seeds)
            notes = [cut_note(n) for n in conditioning.cut[start:end][:1] if n]
            notes += [cut_note(n, True) for n in conditioning.negative_cut[start:end][:1] if n]
            drawn.append(Drawn(images[start:end], tuple(notes)))
            start = end
        return drawn

    def _redraw(
        self,
        requests: Sequence[WorkRequest],
        pictures: list[Any],
        seeds: list[int],
        text: dict[str, Any],
        on_step: StepCallback | None,
    ) -> Any:
        """An upscale's second pass ("hires fix"): each picture enlarged with Lanczos, then
        partly re-noised and denoised again at that size, which adds the detail a plain
        resize cannot. The same model, LoRAs and prompt embeddings, through diffusers'
        image-to-image pipeline built on this one's components (no second copy of the
        weights)."""
        from diffusers import AutoPipelineForImage2Image
        from PIL import Image

        if self._img2img is None:
            self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipe)
            self._img2img.set_progress_bar_config(disable=True)
        first = requests[0].options
        self._img2img.scheduler = self.scheduler(first.scheduler)
        size = (first.width * first.upscale, first.height * first.upscale)
        enlarged = [picture.resize(size, Image.Resampling.LANCZOS) for picture in pictures]
        base = self.pipe.num_timesteps

        def step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if on_step is not None:
                on_step(base + step + 1, base + pipe.num_timesteps)
            return kwargs

        output = self._img2img(
            **text,
            image=enlarged,
            strength=UPSCALE_STRENGTH,
            num_inference_steps=first.redraw_steps,
            guidance_scale=first.guidance_scale,
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
            output_type="np",
            callback_on_step_end=step_end,
        )
        return output.images
