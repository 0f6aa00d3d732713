"""Request options: validated at the boundary, never clamped silently."""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from generation.errors import InvalidOption
from generation.starts import CONTROL_SCALE, Source

SCHEDULERS = ("default", "dpmpp", "euler", "euler_a", "ddim", "unipc", "pndm", "heun")
MAX_SEED = 2**32 - 1
PNDM_MIN_STEPS = 4  # PNDM's Runge-Kutta warm-up needs 4 steps; diffusers fails below
UPSCALE_FACTOR = 2  # an upscale redraws its variant at twice the size
# The largest side served is this many times the model's native side: four times its pixels.
# Beyond it the UNet's cost grows faster than the pixels (attention is quadratic in them): the
# embedded model drew a grid in about 2 s at 64 px, 9 s at 128, 130 s at 256 (a busy 2-core CPU)
# and 76 s idle at 1024; SD 1.5 (512) stops at 1024, SDXL (1024) at 2048.
NATIVE_SIDE_MULTIPLE = 2
UPSCALE_STRENGTH = 0.35  # how much of the image the redraw may change (img2img strength)
LORA_WEIGHT_MIN, LORA_WEIGHT_MAX = -2.0, 2.0  # a LoRA's strength, as A1111 and diffusers allow
MAX_LORAS = 4  # LoRAs in one request


@dataclass(frozen=True, order=True)
class LoraChoice:
    """A LoRA asked for by name (its file's stem in SDBOT_LORA_DIR) with a strength."""

    name: str
    weight: float = 1.0

    def __str__(self) -> str:
        return f"{self.name}:{self.weight:g}"

    @classmethod
    def parse(cls, text: str) -> LoraChoice:
        """``NAME`` or ``NAME:WEIGHT`` (as ``str()`` writes it); InvalidOption names the bad
        part. The name is not looked up here (the catalog does)."""
        name, _, weight = text.strip().partition(":")
        if not name:
            raise InvalidOption("lora", text, "NAME or NAME:WEIGHT")
        if not weight:
            return cls(name)
        try:
            value = float(weight)
        except ValueError:
            raise InvalidOption(
                "lora weight", weight, f"a number from {LORA_WEIGHT_MIN:g} to {LORA_WEIGHT_MAX:g}"
            ) from None
        return cls(name, value)


_SIZE_SPEC = re.compile(r"^\s*(\d+:\d+)\s*=\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_ASPECT = re.compile(r"^\d+:\d+$")
MAX_MODEL_SIDE = 8192  # the largest side a model may declare (SDXL's largest is 1536)


@dataclass(frozen=True)
class Size:
    """One size a model draws well: an aspect ratio's name and its pixels."""

    aspect: str  # "1:1", "3:2", "2:3", "16:9", "9:16"
    width: int
    height: int

    def __post_init__(self) -> None:
        if not _ASPECT.match(self.aspect):
            raise ValueError(f"aspect must be W:H (like 3:2), got {self.aspect!r}")
        for side in (self.width, self.height):
            if (
                isinstance(side, bool)
                or not isinstance(side, int)
                or side % 8
                or not 8 <= side <= MAX_MODEL_SIDE
            ):
                raise ValueError(
                    f"sides must be multiples of 8 from 8 to {MAX_MODEL_SIDE} px, "
                    f"got {self.width!r}x{self.height!r}"
                )

    def __str__(self) -> str:
        return f"{self.width}x{self.height} ({self.aspect})"

    @property
    def spec(self) -> str:
        """What ``parse`` reads back: ``3:2=768x512``."""
        return f"{self.aspect}={self.width}x{self.height}"

    @classmethod
    def parse(cls, spec: str) -> Size:
        """``"3:2=768x512"`` (a models file's ``sizes``); ValueError says what is expected."""
        match = _SIZE_SPEC.match(spec) if isinstance(spec, str) else None
        if match is None:
            raise ValueError(
                f"a size must read ASPECT=WIDTHxHEIGHT (like 3:2=768x512), got {spec!r}"
            )
        return cls(match[1], int(match[2]), int(match[3]))


@dataclass(frozen=True)
class OptionLimits:
    max_prompt_chars: int = 1000
    max_steps: int = 50
    min_guidance: float = 0.0
    max_guidance: float = 20.0
    min_side: int = 64
    max_side: int = 1024
    max_variants: int = 4
    native_side: int | None = None  # the model's, once the limits follow it (limits_for_model)


@dataclass(frozen=True)
class ModelDefaults:
    """What a model draws best with; the embedded model ships its own in ``sdbot.json``."""

    steps: int = 25
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    scheduler: str = "default"
    native_side: int = 512  # the side it was trained at: sizes stop at NATIVE_SIDE_MULTIPLE × it


@dataclass(frozen=True)
class RequestedOptions:
    """What a user asked for; None means "the model's default"."""

    prompt: str
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    variants: int = 4
    scheduler: str | None = None
    model: str | None = None  # a name in the model list; None: the default model
    loras: tuple[LoraChoice, ...] = ()
    aspect: str | None = None  # "1:1", "3:2", …: one of the model's sizes (width/height: exact)
    strength: float | None = None  # with an image: how much of it is redrawn (IMAGE_STRENGTH)
    control: str | None = None  # with a control picture: its kind, one of CONTROL_TYPES
    control_scale: float | None = None  # how strongly the control holds (CONTROL_SCALE)


@dataclass(frozen=True)
class GenerationOptions:
    prompt: str
    negative_prompt: str
    seeds: tuple[int, ...]
    steps: int
    guidance_scale: float
    width: int
    height: int
    scheduler: str
    upscale: int = 1  # 2: each image is redrawn at twice the size (img2img), then delivered
    model: str = ""  # the model list's name for it ("" in code that predates the list: default)
    loras: tuple[LoraChoice, ...] = ()  # checked against the catalog, each weight in range
    start: str = "text"  # one of STARTS; anything but text needs WorkRequest.inputs or source
    strength: float = 1.0  # image, inpaint, outpaint: the share of the schedule redrawn
    source: Source | None = None  # a vary or zoom: the picture is drawn first from this seed
    control: str | None = None  # a ControlNet kind (CONTROL_TYPES); its picture is in inputs
    control_scale: float = CONTROL_SCALE

    @property
    def variants(self) -> int:
        return len(self.seeds)

    @property
    def redraw_steps(self) -> int:
        """The schedule an upscale's redraw is given: the job's steps, but at least enough that
        ``steps × strength`` leaves one step to run (diffusers refuses a redraw of none, which
        a 1- or 2-step job would ask for)."""
        return max(self.steps, math.ceil(1 / UPSCALE_STRENGTH))

    @property
    def refine_steps(self) -> int:
        """The denoising steps of the redraw (diffusers runs ``steps × strength`` of them)."""
        if self.upscale == 1:
            return 0
        return int(self.redraw_steps * UPSCALE_STRENGTH)


class UnstorableText(InvalidOption):
    """Text no database can hold: invalid UTF-8 (a shell passes it as surrogate escapes) or a
    NUL character (SQLite keeps it, PostgreSQL refuses it)."""


def check_storable(option: str, text: str) -> str:
    """``text`` unchanged, or UnstorableText naming the option and the bad characters."""
    if "\x00" in text:
        raise UnstorableText(option, text, "text without NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnstorableText(option, text, "valid UTF-8 text") from None
    return text


def storable(text: str) -> str:
    """``text`` with what no database can hold written out as escapes (for the record of a
    refusal): ``\\x00`` for NUL, ``\\udcff`` for an invalid byte."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def renamed(error: InvalidOption, names: Mapping[str, str]) -> InvalidOption:
    """The same refusal with the option named as a front end calls it (Discord's ``size`` for
    width and height, ``guidance`` for cfg), so that a member reads the option they typed."""
    return InvalidOption(names.get(error.option, error.option), error.value, error.allowed)


def variant_seeds(base_seed: int, variants: int) -> tuple[int, ...]:
    """Variant i uses base_seed + i (wrapping), so one seed reproduces the whole grid."""
    return tuple((base_seed + i) % (MAX_SEED + 1) for i in range(variants))


def _check_int(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOption(name, value, f"a whole number from {low} to {high}")
    return value


def limits_for_model(limits: OptionLimits, defaults: ModelDefaults) -> OptionLimits:
    """The settings' limits, narrowed to the sizes the model can serve in time: sides up to
    NATIVE_SIDE_MULTIPLE × its native side (never below its own default size). Raises
    InvalidOption when SDBOT_MIN_SIDE leaves no size to serve.

    For a validation without sizes (any multiple of 8). A catalog model's sizes already say
    what it draws: narrowing a catalog's limits by one model would hide another's sizes."""
    native = defaults.native_side
    model_max = max(NATIVE_SIDE_MULTIPLE * native, defaults.width, defaults.height) // 8 * 8
    max_side = min(limits.max_side, model_max)
    if limits.min_side > max_side:
        raise InvalidOption(
            "SDBOT_MIN_SIDE",
            limits.min_side,
            f"at most {max_side}, the largest side this model serves "
            f"({NATIVE_SIDE_MULTIPLE} × its native {native} px)",
        )
    return dataclasses.replace(limits, max_side=max_side, native_side=native)


def _check_side(name: str, value: int, limits: OptionLimits) -> int:
    allowed = f"a multiple of 8 from {limits.min_side} to {limits.max_side}"
    if limits.native_side and limits.max_side == NATIVE_SIDE_MULTIPLE * limits.native_side:
        allowed += f" ({NATIVE_SIDE_MULTIPLE} × the model's native {limits.native_side} px)"
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value % 8
        or not limits.min_side <= value <= limits.max_side
    ):
        raise InvalidOption(name, value, allowed)
    return value


def offered_sizes(sizes: Sequence[Size], limits: OptionLimits) -> tuple[Size, ...]:
    """The model's sizes within the limits' sides (a guild's max_side), in the model's order."""
    return tuple(
        size
        for size in sizes
        if limits.min_side <= min(size.width, size.height)
        and max(size.width, size.height) <= limits.max_side
    )


def _choose_size(
    requested: RequestedOptions,
    limits: OptionLimits,
    defaults: ModelDefaults,
    sizes: Sequence[Size],
) -> Size:
    """The size asked for by ``aspect`` or exact ``width``/``height``, else the model's
    default size (its defaults' width × height when offered, else its first size)."""
    offered = offered_sizes(sizes, limits)
    if not offered:
        smallest = min(sizes, key=lambda size: max(size.width, size.height))
        raise InvalidOption(
            "size", str(smallest),
            f"from {limits.min_side} to {limits.max_side} px a side (the limits here), "
            "and this model draws no size within them",
        )  # fmt: skip
    listed = ", ".join(str(size) for size in offered)
    if requested.aspect is not None:
        if requested.width is not None or requested.height is not None:
            raise InvalidOption(
                "aspect", requested.aspect, "given alone: an aspect or a width and height, not both"
            )
        for size in offered:
            if size.aspect == requested.aspect:
                return size
        raise InvalidOption(
            "aspect", requested.aspect, "one of " + ", ".join(size.aspect for size in offered)
        )
    default = next(
        (
            size
            for size in offered
            if (size.width, size.height) == (defaults.width, defaults.height)
        ),
        offered[0],
    )
    if requested.width is None and requested.height is None:
        return default
    width = default.width if requested.width is None else requested.width
    height = default.height if requested.height is None else requested.height
    for size in offered:
        if (size.width, size.height) == (width, height):
            return size
    raise InvalidOption("size", f"{width}x{height}", f"one of {listed}")


def validate(
    requested: RequestedOptions,
    limits: OptionLimits,
    defaults: ModelDefaults,
    sizes: Sequence[Size] | None = None,
) -> GenerationOptions:
    """Checks every option against the limits; fills what was left out from the model defaults.

    With ``sizes`` (a catalog model's) the picture must be one of them within the limits'
    sides: ``aspect`` names one, or ``width``/``height`` match one exactly (a side left out is
    the default size's). Without them (callers that predate the catalog) any multiple of 8
    within the limits is accepted and ``aspect`` is refused.
    """
    prompt = check_storable("prompt", requested.prompt).strip()
    if not prompt:
        raise InvalidOption("prompt", requested.prompt, "non-empty text")
    if len(prompt) > limits.max_prompt_chars:
        raise InvalidOption(
            "prompt", f"{prompt[:40]}… ({len(prompt)} characters)",
            f"at most {limits.max_prompt_chars} characters",
        )  # fmt: skip
    negative = check_storable("negative prompt", requested.negative_prompt).strip()
    if len(negative) > limits.max_prompt_chars:
        raise InvalidOption(
            "negative prompt", f"{negative[:40]}… ({len(negative)} characters)",
            f"at most {limits.max_prompt_chars} characters",
        )  # fmt: skip
    steps = _check_int(
        "steps", defaults.steps if requested.steps is None else requested.steps, 1, limits.max_steps
    )
    guidance = (
        defaults.guidance_scale if requested.guidance_scale is None else requested.guidance_scale
    )
    if not (
        isinstance(guidance, int | float)
        and math.isfinite(guidance)
        and limits.min_guidance <= guidance <= limits.max_guidance
    ):
        raise InvalidOption(
            "cfg", guidance, f"a number from {limits.min_guidance:g} to {limits.max_guidance:g}"
        )
    if sizes is not None:
        size = _choose_size(requested, limits, defaults, sizes)
        width, height = size.width, size.height
    elif requested.aspect is not None:
        raise InvalidOption(
            "aspect", requested.aspect, "width and height (this model has no sizes)"
        )
    else:
        width = _check_side(
            "width", defaults.width if requested.width is None else requested.width, limits
        )
        height = _check_side(
            "height", defaults.height if requested.height is None else requested.height, limits
        )
    variants = _check_int("variants", requested.variants, 1, limits.max_variants)
    scheduler = defaults.scheduler if requested.scheduler is None else requested.scheduler
    if scheduler not in SCHEDULERS:
        raise InvalidOption("scheduler", scheduler, "one of " + ", ".join(SCHEDULERS))
    if scheduler == "pndm" and steps < PNDM_MIN_STEPS:
        raise InvalidOption(
            "steps", steps,
            f"at least {PNDM_MIN_STEPS} with the pndm scheduler (its warm-up takes "
            f"{PNDM_MIN_STEPS}); from {PNDM_MIN_STEPS} to {limits.max_steps}, or another scheduler",
        )  # fmt: skip
    if requested.seed is None:
        base_seed = secrets.randbelow(MAX_SEED + 1)
    else:
        base_seed = _check_int("seed", requested.seed, 0, MAX_SEED)
    return GenerationOptions(
        prompt=prompt,
        negative_prompt=negative,
        seeds=variant_seeds(base_seed, variants),
        steps=steps,
        guidance_scale=float(guidance),
        width=width,
        height=height,
        scheduler=scheduler,
    )
