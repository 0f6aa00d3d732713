"""Loading a model as a diffusers pipeline: a diffusers folder or hub id through
``AutoPipelineForText2Image``, a single ``.safetensors`` checkpoint through its family's pipeline
class with a config folder (the model entry's, else the one shipped in ``generation/configs``),
so nothing is fetched from a hub. Imported only by the worker (and tools): it imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from generation.errors import ModelLoadError
from generation.families import Family, family_of_checkpoint, family_of_folder
from generation.models import ModelSource, SourceKind

if TYPE_CHECKING:
    from generation.catalog import ModelEntry

SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"


def shipped_config(family: Family) -> Path:
    """The diffusers config folder (no weights) the project ships for ``family``."""
    return SHIPPED_CONFIGS / family.value


def pipeline_class(family: Family) -> Any:
    """The text-to-image pipeline class that loads ``family``'s single files."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if family is Family.SDXL else StableDiffusionPipeline


def _quiet() -> None:
    # The libraries' own chatter (optional-backend notices, progress bars) is not ours to show.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import diffusers.utils.logging

    diffusers.utils.logging.disable_progress_bar()  # our own progress goes to the caller


def load_pipeline(
    model: ModelEntry | ModelSource,
    device: str,
    dtype: torch.dtype,
    *,
    family: Family | None = None,
    config: Path | None = None,
) -> Any:
    """``model`` as a text-to-image pipeline on ``device``. ``family`` and ``config`` (a single
    file's config folder) override the entry's; a single file's family is otherwise read from
    its tensor names. Every failure is a ModelLoadError naming the model and the cause."""
    if isinstance(model, ModelSource):
        source = model
    else:
        source = model.source
        family = family or model.family
        config = config or model.config
    _quiet()
    from safetensors import SafetensorError

    try:
        if source.kind is SourceKind.SINGLE_FILE:
            pipe = _load_single_file(source.path, dtype, family, config)
        else:
            from diffusers import AutoPipelineForText2Image

            pipe = AutoPipelineForText2Image.from_pretrained(
                source.spec, dtype=dtype, local_files_only=source.kind is SourceKind.FOLDER
            )
    except ModelLoadError as error:
        raise ModelLoadError(f"could not load model {source.spec!r}: {error}") from error
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
        raise ModelLoadError(f"could not load model {source.spec!r}: {error}") from error
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _load_single_file(
    path: Path, dtype: torch.dtype, family: Family | None, config: Path | None
) -> Any:
    found = family_of_checkpoint(path)  # also refuses a corrupt or cut-short file
    if family is not None and family is not found:
        raise ModelLoadError(f"it is declared {family} but its tensors are {found}'s")
    folder = config or shipped_config(found)
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"config folder {folder} has no model_index.json")
    if (config_family := family_of_folder(folder)) is not found:
        raise ModelLoadError(
            f"the checkpoint is {found} but config folder {folder} is {config_family}"
        )
    extra: dict[str, Any] = {}
    if found is not Family.SDXL:
        extra["requires_safety_checker"] = False  # a checkpoint file holds no safety checker
    return pipeline_class(found).from_single_file(
        str(path), config=str(folder), local_files_only=True, dtype=dtype, **extra
    )


def load_controlnet(folder: Path, device: str, dtype: torch.dtype) -> Any:
    """A diffusers ControlNetModel folder on ``device`` (local files only); a failure is a
    ModelLoadError naming the folder and the cause."""
    _quiet()
    from diffusers import ControlNetModel
    from safetensors import SafetensorError

    try:
        controlnet = ControlNetModel.from_pretrained(
            folder, torch_dtype=dtype, local_files_only=True
        )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
        raise ModelLoadError(f"could not load ControlNet {str(folder)!r}: {error}") from error
    return controlnet.to(device)
