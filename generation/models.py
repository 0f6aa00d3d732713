"""Where a model comes from (a folder, a single checkpoint file, a hub id) and its defaults.

Nothing here imports torch: the bot process uses it to describe the model without loading it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.errors import ModelLoadError
from generation.options import ModelDefaults, Size

EMBEDDED_MODEL_DIR = Path(__file__).resolve().parent / "embedded" / "model"
DEFAULTS_FILE = "sdbot.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")


class SourceKind(enum.StrEnum):
    FOLDER = "folder"
    SINGLE_FILE = "single-file"
    HUB = "hub"


@dataclass(frozen=True)
class ModelSource:
    spec: str
    kind: SourceKind

    @property
    def path(self) -> Path:
        return Path(self.spec).expanduser()


def resolve_model(spec: str) -> ModelSource:
    """Decides how ``spec`` loads; a path that does not exist is an error, not a hub id."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"model folder {spec} has no model_index.json: expected a diffusers "
                "Stable Diffusion folder (vae/, unet/, text_encoder/, tokenizer/, scheduler/)"
            )
        return ModelSource(str(path), SourceKind.FOLDER)
    if path.suffix in _CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise ModelLoadError(f"model checkpoint {spec} does not exist")
        return ModelSource(str(path), SourceKind.SINGLE_FILE)
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return ModelSource(spec, SourceKind.HUB)
    raise ModelLoadError(
        f"model {spec!r} is neither a diffusers folder, a .safetensors/.ckpt file, "
        "nor a hub id like 'stable-diffusion-v1-5/stable-diffusion-v1-5'"
    )


def _native_size(folder: Path) -> int | None:
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    sample_size = unet.get("sample_size")
    blocks = vae.get("block_out_channels")
    if not isinstance(sample_size, int) or not isinstance(blocks, list):
        return None
    return int(sample_size * 2 ** (len(blocks) - 1))


_DEFAULT_TYPES: dict[str, tuple[type, ...]] = {
    "steps": (int,),
    "guidance_scale": (int, float),
    "width": (int,),
    "height": (int,),
    "scheduler": (str,),
    "native_side": (int,),
}


def _defaults_from(raw: object, path: Path) -> ModelDefaults:
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path} must hold a JSON object, not {type(raw).__name__}")
    values: dict[str, Any] = {}
    for name, kinds in _DEFAULT_TYPES.items():
        if name not in raw:
            continue
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ModelLoadError(f"{path}: {name} must be {kinds[0].__name__}, got {value!r}")
        values[name] = value
    return ModelDefaults(**values)


def _defaults_file(source: ModelSource) -> tuple[Path, dict[str, Any]] | None:
    """A folder's sdbot.json and its object; None when there is none."""
    if source.kind is not SourceKind.FOLDER:
        return None
    path = source.path / DEFAULTS_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except ValueError as error:
        raise ModelLoadError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path} must hold a JSON object, not {type(raw).__name__}")
    return path, raw


def model_defaults(source: ModelSource) -> ModelDefaults:
    """The model's own recommendations: its sdbot.json, else its native size, else SD's.

    The native side (what the size limits follow) is sdbot.json's ``native_side``, else the
    one its UNet and VAE configs give, else SD's 512 (a hub id or a single checkpoint file,
    which are not read here; SDXL's 1024 is then still within the limit).
    """
    if source.kind is not SourceKind.FOLDER:
        return ModelDefaults()
    native = _native_size(source.path)
    found = _defaults_file(source)
    if found is not None:
        defaults_file, raw = found
        defaults = _defaults_from(raw, defaults_file)
        if native is not None and "native_side" not in raw:
            defaults = dataclasses.replace(defaults, native_side=native)
        if not 8 <= defaults.native_side <= 8192:
            raise ModelLoadError(
                f"{defaults_file}: native_side must be from 8 to 8192 px, "
                f"got {defaults.native_side}"
            )
        return defaults
    if native is None:
        return ModelDefaults()
    return ModelDefaults(width=native, height=native, native_side=native)


def native_side(source: ModelSource) -> int | None:
    """A folder's native side from its UNet and VAE configs; None when not known unloaded."""
    return _native_size(source.path) if source.kind is SourceKind.FOLDER else None


def declared_name(source: ModelSource) -> str | None:
    """The ``name`` a folder's sdbot.json gives its model (the embedded model's: embedded)."""
    found = _defaults_file(source)
    if found is None or "name" not in found[1]:
        return None
    path, raw = found
    if not isinstance(raw["name"], str):
        raise ModelLoadError(f"{path}: name must be str, got {raw['name']!r}")
    return raw["name"]


def declared_sizes(source: ModelSource) -> tuple[Size, ...]:
    """The sizes a folder's sdbot.json declares (``"sizes": {"1:1": [64, 64], …}``, the first
    the default); () when it declares none."""
    found = _defaults_file(source)
    if found is None or "sizes" not in found[1]:
        return ()
    path, raw = found
    declared = raw["sizes"]
    if not isinstance(declared, dict) or not declared:
        raise ModelLoadError(
            f'{path}: sizes must be an object like {{"1:1": [64, 64]}}, got {declared!r}'
        )
    sizes = []
    for aspect, sides in declared.items():
        try:
            if not isinstance(sides, list) or len(sides) != 2:
                raise ValueError(f"[WIDTH, HEIGHT] expected, got {sides!r}")
            sizes.append(Size(aspect, sides[0], sides[1]))
        except ValueError as error:
            raise ModelLoadError(f"{path}: sizes: {aspect}: {error}") from None
    return tuple(sizes)


def folder_cross_attention_dim(source: ModelSource) -> int | None:
    """The UNet's cross-attention width from a folder's unet/config.json (what a LoRA's
    attention projections must fit); None for other sources or an unreadable config."""
    if source.kind is not SourceKind.FOLDER:
        return None
    try:
        unet = json.loads((source.path / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    dim = unet.get("cross_attention_dim") if isinstance(unet, dict) else None
    if isinstance(dim, list) and dim and all(d == dim[0] for d in dim):
        dim = dim[0]  # diffusers allows one per block; a LoRA fits only a uniform width
    return dim if isinstance(dim, int) and not isinstance(dim, bool) else None
