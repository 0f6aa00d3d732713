"""/describe's reading of a picture: prompts that would draw it again.

- The embedded model: the scene analyser (``generation.embedded.analyser``) reads the
  background and the shapes, and the prompts are said in the words the model was trained on
  ("a large red circle in the centre on a blue background"), most explicit first. No weights,
  exact for the model's own pictures.
- Any other model: a captioning model (BLIP, ``SDBOT_CAPTION_MODEL``), loaded once from its
  folder with ``local_files_only`` and asked for its best beams: deterministic for a picture.

Heavy libraries (torch, transformers) are imported by the captioner only.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from common.errors import ErrorKind
from generation.embedded.prompts import WHERE
from generation.errors import GenerationError, ModelLoadError
from generation.models import EMBEDDED_MODEL_DIR, SourceKind, resolve_model

if TYPE_CHECKING:
    from generation.catalog_files import ModelEntry
    from generation.embedded.analyser import DetectedObject

MAX_PROMPTS = 4  # what /describe answers at most
CAPTION_TOKENS = 30  # the longest caption, in tokens
_VOCAB = Path("tokenizer") / "vocab.json"
# A shape's area over its half-extent squared: a square's side is 2h, a circle's radius h,
# the upright triangle covers half its 2h × 2h box (``generation.embedded.scenes``).
_AREA_PER_HALF_SQUARED = {"square": 4.0, "circle": math.pi, "triangle": 2.0}
_LARGE_FROM = 9.0  # half-extent in px between small (6) and large (12)


class NoShapeFound(GenerationError):
    """The embedded model's reading found a plain background and nothing on it."""

    def __init__(self, background: str) -> None:
        super().__init__(
            f"no shape found: the picture reads as a plain {background} background "
            "(the embedded model draws circles, squares and triangles on one)"
        )
        self.background = background


class CaptionModelError(ModelLoadError):
    """SDBOT_CAPTION_MODEL names no captioning model that loads (a settings error)."""

    kind = ErrorKind.BAD_INPUT


def draws_scenes(entry: ModelEntry) -> bool:
    """Whether ``entry`` is the embedded model (or a copy or retrain of it): a folder whose
    tokenizer is the embedded model's, so the analyser's words are its words."""
    source = entry.source
    if source.kind is not SourceKind.FOLDER:
        return False
    try:
        return (source.path / _VOCAB).read_bytes() == (EMBEDDED_MODEL_DIR / _VOCAB).read_bytes()
    except OSError:
        return False


def is_embedded(spec: str) -> bool:
    """:func:`draws_scenes` for a model given as SDBOT_MODEL would give it."""
    from generation.catalog_files import single_model

    try:
        resolve_model(spec)
        return draws_scenes(single_model(spec))
    except ModelLoadError:
        return False


@dataclass(frozen=True)
class _Thing:
    """One shape as the prompts say it."""

    colour: str
    shape: str
    size: str
    where: str


def _size(obj: DetectedObject) -> str:
    half = math.sqrt(obj.area / _AREA_PER_HALF_SQUARED[obj.shape.value])
    return "large" if half >= _LARGE_FROM else "small"


def _thing(obj: DetectedObject) -> _Thing:
    return _Thing(obj.colour, obj.shape.value, _size(obj), obj.position.name)


def _say(things: tuple[_Thing, ...], background: str, *, size: bool, where: bool) -> str:
    def noun(thing: _Thing, plural: bool = False) -> str:
        words = ([thing.size] if size else []) + [thing.colour, thing.shape + "s" * plural]
        return " ".join(words)

    first = things[0]
    twin = len(things) == 2 and things[0].colour == things[1].colour
    twin = twin and (things[0].shape, things[0].size) == (things[1].shape, things[1].size)
    if twin:
        body = "two " + noun(first, plural=True)
        if where:
            a, b = sorted(thing.where for thing in things)
            body += f", one {WHERE[a]} and one {WHERE[b]},"
    else:
        said = [f"a {noun(t)}" + (f" {WHERE[t.where]}" if where else "") for t in things]
        body = " and ".join(said)
    return f"{body} on a {background} background"


def describe_embedded(rgb: npt.NDArray[np.uint8]) -> tuple[str, ...]:
    """Prompts for the embedded model that draw what ``rgb`` shows (an (H, W, 3) picture), most
    explicit first: with sizes and positions, without sizes, without positions, neither.
    Raises NoShapeFound for a plain background."""
    from generation.embedded.analyser import analyse

    # 1. Read the scene; a scene holds one or two shapes: the two largest regions are they.
    analysis = analyse(rgb)
    if not analysis.objects:
        raise NoShapeFound(analysis.background)
    largest = analysis.objects[:2]
    # 2. Left to right, then top to bottom, as a person reads the picture.
    things = tuple(_thing(o) for o in sorted(largest, key=lambda o: (o.centroid[0], o.centroid[1])))
    # 3. The phrasings, best first, each said once.
    said = (
        _say(things, analysis.background, size=True, where=True),
        _say(things, analysis.background, size=False, where=True),
        _say(things, analysis.background, size=True, where=False),
        _say(things, analysis.background, size=False, where=False),
    )
    return tuple(dict.fromkeys(said))[:MAX_PROMPTS]


class Captioner:
    """A BLIP captioning model from a local folder (``BlipForConditionalGeneration`` with its
    ``BlipProcessor``), loaded once; :meth:`captions` may be called from any thread (one at a
    time)."""

    def __init__(self, folder: Path, *, device: str = "cpu") -> None:
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor

        if not folder.is_dir():
            raise CaptionModelError(f"SDBOT_CAPTION_MODEL: {folder} is not a folder")
        try:
            self.processor: Any = BlipProcessor.from_pretrained(folder, local_files_only=True)
            model: Any = BlipForConditionalGeneration.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise CaptionModelError(
                f"SDBOT_CAPTION_MODEL: {folder} is not a BLIP captioning model folder "
                f"(BlipForConditionalGeneration with its processor): {error}"
            ) from error
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.folder = folder
        self._lock = threading.Lock()

    def captions(self, rgb: npt.NDArray[np.uint8], count: int = MAX_PROMPTS) -> tuple[str, ...]:
        """Up to ``count`` different captions, best first: beam search's best ``count`` beams
        (no sampling, so a picture always gets the same captions)."""
        import torch
        from PIL import Image

        # 1. The picture as the model reads it.
        inputs = self.processor(images=Image.fromarray(rgb), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.model.dtype)
        # 2. Beam search: the best ``count`` beams, deterministic.
        with self._lock, torch.inference_mode():
            tokens = self.model.generate(
                pixel_values=pixels,
                num_beams=count,
                num_return_sequences=count,
                max_new_tokens=CAPTION_TOKENS,
                do_sample=False,
            )
        # 3. Words, each caption once.
        texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
        said = (" ".join(str(text).split()) for text in texts)
        return tuple(dict.fromkeys(text for text in said if text))[:count]
