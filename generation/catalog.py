"""The models, LoRAs and textual-inversion embeddings an operator offers, and how a request's
choice of them is checked. Nothing here imports torch: the bot process checks requests with it.

- models: ``SDBOT_MODELS_FILE`` (TOML, ``[[model]]`` tables), else the one ``SDBOT_MODEL``;
- LoRAs: ``*.safetensors`` in ``SDBOT_LORA_DIR``, named by their stem;
- embeddings: ``*.safetensors``/``*.pt`` in ``SDBOT_EMBEDDING_DIR``, used by their token.

SKELETON (issue 17): signatures fixed by the plan; bodies are filled by their owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generation.families import Family
from generation.models import ModelSource
from generation.options import (
    GenerationOptions,
    ModelDefaults,
    OptionLimits,
    RequestedOptions,
)


@dataclass(frozen=True)
class Size:
    """One size a model draws well: an aspect ratio's name and its pixels."""

    aspect: str  # "1:1", "3:2", "2:3", "16:9", "9:16"
    width: int
    height: int


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


@dataclass(frozen=True)
class Catalog:
    """Picklable: the worker process gets it in its spec."""

    models: tuple[ModelEntry, ...]
    default_model: str
    loras: tuple[LoraFile, ...] = ()
    embeddings: tuple[EmbeddingFile, ...] = ()

    def model(self, name: str | None) -> ModelEntry:
        """The entry named (None or "": the default); InvalidOption lists the names."""
        raise NotImplementedError

    def lora(self, name: str) -> LoraFile:
        """InvalidOption lists the LoRAs when ``name`` is not one."""
        raise NotImplementedError

    def loras_for(self, model: ModelEntry) -> tuple[LoraFile, ...]:
        """The LoRAs that fit ``model`` (their width matches its cross-attention)."""
        raise NotImplementedError

    def embeddings_in(self, *texts: str) -> tuple[str, ...]:
        """The embedding tokens used in ``texts`` (prompt, negative prompt), in catalog order."""
        raise NotImplementedError

    def validate(self, requested: RequestedOptions, limits: OptionLimits) -> GenerationOptions:
        """``generation.options.validate`` for the model asked for, with its defaults and sizes,
        then every LoRA: known, fits the model, weight in range, at most MAX_LORAS, ``<lora:…>``
        tags in the prompt taken out into ``loras``. The result names the model and LoRAs."""
        raise NotImplementedError


def load_catalog(
    model: str,
    *,
    models_file: Path | None = None,
    lora_dir: Path | None = None,
    embedding_dir: Path | None = None,
) -> Catalog:
    """The operator's catalog; ModelLoadError names the bad file, entry and field."""
    raise NotImplementedError
