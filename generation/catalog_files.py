"""The catalog's entries and what it reads from the operator's files without loading them (no
torch): the models file (TOML), a model's name, family, defaults and sizes (its sdbot.json, else
its family's), and the widths a LoRA, an embedding or a checkpoint was made for (safetensors
headers). ``generation.catalog`` re-exports the entries."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.errors import ModelLoadError
from generation.families import (
    CROSS_ATTENTION_DIM,
    Family,
    family_of_checkpoint,
    family_of_folder,
    safetensors_header,
)
from generation.models import (
    EMBEDDED_MODEL_DIR,
    ModelSource,
    SourceKind,
    declared_name,
    declared_sizes,
    folder_cross_attention_dim,
    model_defaults,
    native_side,
    resolve_model,
)
from generation.options import SCHEDULERS, ModelDefaults, Size
from generation.starts import CONTROL_TYPES

# The ControlNets the project trains for its embedded model (generation.embedded.controlnet).
EMBEDDED_CONTROLNETS = EMBEDDED_MODEL_DIR.parent / "controlnet"


@dataclass(frozen=True)
class ModelEntry:
    name: str  # what members type (model:NAME) and the audit record keeps
    source: ModelSource
    family: Family
    defaults: ModelDefaults
    sizes: tuple[Size, ...]  # the first is the default size
    nsfw_only: bool = False  # True: only in age-restricted (NSFW) channels
    config: Path | None = None  # a single file's config folder (the family's shipped one if None)
    cross_attention_dim: int | None = None  # what a LoRA must fit; None: not known before loading
    description: str = ""
    # ControlNets by kind (one of CONTROL_TYPES): each a diffusers ControlNetModel folder.
    controlnets: tuple[tuple[str, Path], ...] = ()

    def controlnet(self, kind: str) -> Path | None:
        """The folder of this model's ControlNet for ``kind`` (None: it has none)."""
        return dict(self.controlnets).get(kind)


@dataclass(frozen=True)
class LoraFile:
    name: str  # the file's stem
    path: Path
    cross_attention_dim: int | None  # read from its attention projections; None: not found


@dataclass(frozen=True)
class EmbeddingFile:
    token: str  # the file's stem, typed in a prompt or negative prompt
    path: Path
    dim: int | None  # the text encoder width it was made for (None: not found)


# A LoRA's or an embedding's file stem: what members type, so nothing a tag or list splits on.
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# A model's name: what members type (model:NAME) and the audit record keeps.
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")

# The sizes each family is trained for, the first its default: SD 1.x at 512, SD 2.x at 768
# (its v-prediction model), SDXL at 1024 (its published aspect buckets).
FAMILY_SIZES: dict[Family, tuple[Size, ...]] = {
    Family.SD1: (
        Size("1:1", 512, 512),
        Size("3:2", 768, 512),
        Size("2:3", 512, 768),
        Size("16:9", 912, 512),
        Size("9:16", 512, 912),
    ),
    Family.SD2: (
        Size("1:1", 768, 768),
        Size("3:2", 912, 608),
        Size("2:3", 608, 912),
        Size("16:9", 1024, 576),
        Size("9:16", 576, 1024),
    ),
    Family.SDXL: (
        Size("1:1", 1024, 1024),
        Size("3:2", 1216, 832),
        Size("2:3", 832, 1216),
        Size("16:9", 1344, 768),
        Size("9:16", 768, 1344),
    ),
}


def family_sizes(family: Family, native_side: int | None = None) -> tuple[Size, ...]:
    """The family's sizes, scaled to ``native_side`` when a model was trained at another side
    than its family's (a small model built in code): each side a multiple of 8."""
    sizes = FAMILY_SIZES[family]
    native = sizes[0].width
    if native_side is None or native_side == native:
        return sizes
    scale = native_side / native
    return tuple(
        Size(
            s.aspect,
            max(8, round(s.width * scale / 8) * 8),
            max(8, round(s.height * scale / 8) * 8),
        )
        for s in sizes
    )


def clean_name(stem: str) -> str:
    """A folder's or file's stem as a model name: lower case, other characters as '-'."""
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", ascii_stem.lower()).lstrip("-._")[:32].rstrip("-._")
    return cleaned or "model"


def _shape(entry: dict[str, object]) -> list[int]:
    shape = entry.get("shape")
    if isinstance(shape, list) and all(isinstance(d, int) for d in shape):
        return shape
    return []


# The input (``down``/``A``) half of a LoRA on a cross-attention key or value projection, in the
# layouts in use: PEFT/diffusers (``…attn2.to_k.lora_A.weight``), diffusers' older layers
# (``…attn2.to_k.lora.down.weight``, ``…attn2.processor.to_k_lora.down.weight``) and kohya/A1111
# (``lora_unet_…_attn2_to_k.lora_down.weight``).
_LORA_KV_DOWN = re.compile(
    r"attn2[._](?:processor\.)?to_[kv](?:\.lora_A|\.lora\.down|_lora\.down|\.lora_down)\."
)


def lora_width(path: Path) -> int | None:
    """The cross-attention width a LoRA file was trained on (the input width of its attn2
    key/value matrices); None when it adapts none (a text-encoder-only LoRA). ModelLoadError
    for a corrupt file."""
    for name, entry in safetensors_header(path).items():
        shape = _shape(entry)
        if _LORA_KV_DOWN.search(name) and len(shape) == 2:
            return shape[1]
    return None


def embedding_width(path: Path) -> int | None:
    """The text-encoder width an embedding was made for: A1111's ``emb_params`` or a diffusers
    file's one tensor ([vectors, width] or [width]); SDXL's ``clip_l`` + ``clip_g`` added up
    (2048, its UNet's cross-attention width). None for a ``.pt`` (pickle: torch would read it)
    or a layout not known."""
    if path.suffix != ".safetensors":
        return None
    tensors = {k: _shape(v) for k, v in safetensors_header(path).items() if k != "__metadata__"}
    if "clip_l" in tensors and "clip_g" in tensors:
        widths = [tensors["clip_l"][-1:], tensors["clip_g"][-1:]]
        return widths[0][0] + widths[1][0] if all(widths) else None
    shape = tensors.get("emb_params") or (next(iter(tensors.values())) if len(tensors) == 1 else [])
    return shape[-1] if shape else None


def checkpoint_width(path: Path) -> int | None:
    """A single checkpoint's UNet cross-attention width (its attn2.to_k input width)."""
    for name, entry in safetensors_header(path).items():
        shape = _shape(entry)
        if name.startswith("model.diffusion_model.") and name.endswith("attn2.to_k.weight"):
            return shape[1] if len(shape) == 2 else None
    return None


def _model_entry(
    source: ModelSource,
    name: str,
    family: Family | None = None,
    sizes: tuple[Size, ...] = (),
    settings: dict[str, Any] | None = None,
    **fields: Any,
) -> ModelEntry:
    """An entry with what the file did not say found from the model itself: the family from
    its folder or tensors, defaults and sizes from its sdbot.json, else the family's sizes."""
    if family is None:
        if source.kind is SourceKind.FOLDER:
            family = family_of_folder(source.path)
        elif source.kind is SourceKind.SINGLE_FILE:
            family = family_of_checkpoint(source.path)
        else:
            family = Family.SD1  # a hub id's is not known unloaded: SDBOT_MODEL's old assumption
    defaults = dataclasses.replace(model_defaults(source), **(settings or {}))
    if not sizes:  # the models file's first size is the default; else sdbot.json's width × height
        sizes = declared_sizes(source) or family_sizes(family, native_side(source))
        wanted = [s for s in sizes if (s.width, s.height) == (defaults.width, defaults.height)]
        sizes = (*wanted[:1], *(s for s in sizes if s not in wanted[:1]))
    defaults = dataclasses.replace(defaults, width=sizes[0].width, height=sizes[0].height)
    if source.kind is SourceKind.FOLDER:
        width = folder_cross_attention_dim(source)
    elif source.kind is SourceKind.SINGLE_FILE:
        width = checkpoint_width(source.path) or CROSS_ATTENTION_DIM[family]
    else:
        width = CROSS_ATTENTION_DIM[family]
    if "controlnets" not in fields:
        fields["controlnets"] = shipped_controlnets(source)
    return ModelEntry(name, source, family, defaults, sizes, cross_attention_dim=width, **fields)


def is_controlnet_folder(path: Path) -> bool:
    """A diffusers ControlNetModel folder: its config and its weights."""
    weights = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
    return (path / "config.json").is_file() and any((path / w).is_file() for w in weights)


def shipped_controlnets(source: ModelSource) -> tuple[tuple[str, Path], ...]:
    """The embedded model's own ControlNets (those trained and shipped); none for others."""
    if source.kind is not SourceKind.FOLDER or source.path.resolve() != EMBEDDED_MODEL_DIR:
        return ()
    folders = ((kind, EMBEDDED_CONTROLNETS / kind) for kind in CONTROL_TYPES)
    return tuple((kind, path) for kind, path in folders if is_controlnet_folder(path))


def _read_controlnets(table: dict[str, Any], base: Path) -> tuple[tuple[str, Path], ...]:
    """A models file's ``controlnets = { canny = "folder" }``, each folder checked."""
    found = []
    for kind, folder in table.items():
        if kind not in CONTROL_TYPES:
            raise ValueError(
                f"controlnets names {kind!r}: the kinds are {', '.join(CONTROL_TYPES)}"
            )
        if not isinstance(folder, str):
            raise ValueError(f"controlnets.{kind} must be str (a folder), got {folder!r}")
        path = base / Path(folder).expanduser()
        if not is_controlnet_folder(path):
            raise ValueError(
                f"controlnets.{kind} must be a diffusers ControlNet folder (config.json and "
                f"diffusion_pytorch_model.safetensors), got {path}"
            )
        found.append((kind, path))
    return tuple(found)


def single_model(spec: str) -> ModelEntry:
    """SDBOT_MODEL as the only model: named by its sdbot.json, else its folder or file."""
    source = resolve_model(spec)
    if source.kind is SourceKind.HUB:
        stem = spec.rsplit("/", 1)[-1]  # not Path.stem: "stable-diffusion-v1.5" has no suffix
    else:
        path = source.path.resolve()  # "." names its folder
        stem = path.stem if source.kind is SourceKind.SINGLE_FILE else path.name
    name = declared_name(source) or clean_name(stem)
    if not MODEL_NAME.match(name):
        raise ModelLoadError(f"{spec}: name {name!r} must match {MODEL_NAME.pattern}")
    return _model_entry(source, name)


# A models file's fields and their TOML types (the first named in an error).
_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "source": (str,), "family": (str,), "config": (str,), "sizes": (list,),
    "steps": (int,), "cfg": (int, float), "scheduler": (str,), "nsfw_only": (bool,),
    "default": (bool,), "description": (str,), "controlnets": (dict,),
}  # fmt: skip


def _read_entry(table: dict[str, Any], base: Path) -> tuple[ModelEntry, bool]:
    """One ``[[model]]`` table; ValueError/ModelLoadError name the field (the caller adds
    the file and the entry)."""
    for key, value in table.items():
        kinds = _FIELDS.get(key)
        if kinds is None:
            raise ValueError(f"unknown field {key!r} (fields: {', '.join(_FIELDS)})")
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ValueError(f"{key} must be {kinds[0].__name__}, got {value!r}")
    for key in ("name", "source"):
        if key not in table:
            raise ValueError(f"{key} is missing")
    if not MODEL_NAME.match(table["name"]):
        raise ValueError(f"name must match {MODEL_NAME.pattern}, got {table['name']!r}")
    settings: dict[str, Any] = {}
    if "steps" in table:
        if table["steps"] < 1:
            raise ValueError(f"steps must be at least 1, got {table['steps']}")
        settings["steps"] = table["steps"]
    if "cfg" in table:
        if not (math.isfinite(table["cfg"]) and table["cfg"] >= 0):
            raise ValueError(f"cfg must be a number of at least 0, got {table['cfg']}")
        settings["guidance_scale"] = float(table["cfg"])
    if "scheduler" in table:
        if table["scheduler"] not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}")
        settings["scheduler"] = table["scheduler"]
    family = None
    if "family" in table:
        if table["family"] not in set(Family):
            raise ValueError(f"family must be one of {', '.join(Family)}, got {table['family']!r}")
        family = Family(table["family"])
    sizes = tuple(Size.parse(spec) for spec in table.get("sizes", ()))
    if "sizes" in table and not sizes:
        raise ValueError("sizes must list at least one size (or be left out)")
    if len({s.aspect for s in sizes}) < len(sizes):
        raise ValueError("sizes names an aspect twice")
    spec = table["source"]
    local = base / Path(spec).expanduser()
    source = resolve_model(str(local) if local.exists() else spec)
    if source.kind is SourceKind.HUB and family is None:
        raise ValueError("family is needed for a hub id (sd1, sd2 or sdxl): it is not read")
    config = None
    if "config" in table:
        config = base / Path(table["config"]).expanduser()
        if source.kind is not SourceKind.SINGLE_FILE or not config.is_dir():
            raise ValueError(f"config must be a folder, for a single-file source: {config}")
    extra: dict[str, Any] = {}
    if "controlnets" in table:
        extra["controlnets"] = _read_controlnets(table["controlnets"], base)
    entry = _model_entry(
        source, table["name"], family, sizes, settings,
        nsfw_only=table.get("nsfw_only", False), config=config,
        description=table.get("description", ""), **extra,
    )  # fmt: skip
    return entry, table.get("default", False)


def read_models_file(path: Path) -> tuple[tuple[ModelEntry, bool], ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ModelLoadError(f"models file {path}: {error}") from error
    tables = data.pop("model", None)
    if data or not isinstance(tables, list) or not tables:
        raise ModelLoadError(
            f"models file {path}: expected [[model]] tables only, found {sorted(data) or tables!r}"
        )
    entries: list[tuple[ModelEntry, bool]] = []
    for number, table in enumerate(tables, 1):
        if not isinstance(table, dict):
            raise ModelLoadError(f"models file {path}: model {number} is not a table: {table!r}")
        where = f"models file {path}: model {number} ({table.get('name', 'no name')})"
        try:
            entry, is_default = _read_entry(table, path.parent)
        except (ValueError, ModelLoadError) as error:
            raise ModelLoadError(f"{where}: {error}") from error
        if any(entry.name == e.name for e, _ in entries):
            raise ModelLoadError(f"{where}: name {entry.name!r} is given twice")
        if is_default and any(d for _, d in entries):
            raise ModelLoadError(f"{where}: default = true, but another model is the default")
        entries.append((entry, is_default))
    return tuple(entries)
