"""The models, LoRAs and textual-inversion embeddings an operator offers, and how a request's
choice of them is checked. Nothing here imports torch: the bot process checks requests with it.

- models: ``SDBOT_MODELS_FILE`` (TOML, ``[[model]]`` tables), else the one ``SDBOT_MODEL``;
- LoRAs: ``*.safetensors`` in ``SDBOT_LORA_DIR``, named by their stem;
- embeddings: ``*.safetensors``/``*.pt`` in ``SDBOT_EMBEDDING_DIR``, used by their token.

A width is what must match for a file to fit a model: a model's UNet cross-attention width
(768 SD 1.x, 1024 SD 2.x, 2048 SDXL, 128 the embedded model), a LoRA's attention ``to_k``/``to_v``
input width, an embedding's vector width (SDXL's two vectors together). None: not known without
loading (a hub id, a ``.pt`` file), and then nothing is refused for it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from generation.catalog_files import (
    FILE_NAME,
    EmbeddingFile,
    LoraFile,
    ModelEntry,
    embedding_width,
    lora_width,
    read_models_file,
    single_model,
)
from generation.errors import CatalogError, InvalidOption, ModelLoadError
from generation.options import (
    LORA_WEIGHT_MAX,
    LORA_WEIGHT_MIN,
    MAX_LORAS,
    GenerationOptions,
    LoraChoice,
    ModelDefaults,
    OptionLimits,
    RequestedOptions,
    Size,
    validate,
)
from generation.prompt_syntax import check_weights, take_lora_tags

__all__ = ["Catalog", "EmbeddingFile", "LoraFile", "ModelEntry", "Size", "load_catalog"]


def _fits(width: int | None, model: ModelEntry) -> bool:
    return width is None or model.cross_attention_dim is None or width == model.cross_attention_dim


@dataclass(frozen=True)
class Catalog:
    """Picklable: the worker process gets it in its spec."""

    models: tuple[ModelEntry, ...]
    default_model: str
    loras: tuple[LoraFile, ...] = ()
    embeddings: tuple[EmbeddingFile, ...] = ()

    def model(self, name: str | None) -> ModelEntry:
        """The entry named (None or "": the default); InvalidOption lists the names."""
        wanted = name or self.default_model
        for entry in self.models:
            if entry.name == wanted:
                return entry
        raise InvalidOption("model", name, "one of " + ", ".join(m.name for m in self.models))

    def lora(self, name: str) -> LoraFile:
        """InvalidOption lists the LoRAs when ``name`` is not one."""
        for lora in self.loras:
            if lora.name == name:
                return lora
        known = ", ".join(lora.name for lora in self.loras)
        raise InvalidOption("lora", name, f"one of {known}" if known else "none (no LoRAs here)")

    def loras_for(self, model: ModelEntry) -> tuple[LoraFile, ...]:
        """The LoRAs that fit ``model`` (their width matches its cross-attention)."""
        return tuple(lora for lora in self.loras if _fits(lora.cross_attention_dim, model))

    def embeddings_for(self, model: ModelEntry) -> tuple[EmbeddingFile, ...]:
        """The embeddings whose width fits ``model``'s text encoder (the worker loads these)."""
        return tuple(e for e in self.embeddings if _fits(e.dim, model))

    def embeddings_in(self, *texts: str) -> tuple[str, ...]:
        """The embedding tokens used in ``texts`` (prompt, negative prompt), in catalog order.
        A token counts as a whole word: ``bad-hands`` is not used by ``bad-hands-5``."""
        return tuple(
            e.token for e in self.embeddings if any(_word(e.token).search(text) for text in texts)
        )

    def validate(self, requested: RequestedOptions, limits: OptionLimits) -> GenerationOptions:
        """``generation.options.validate`` for the model asked for, with its defaults and sizes,
        then every LoRA: known, fits the model, weight in range, at most MAX_LORAS, ``<lora:…>``
        tags in the prompt taken out into ``loras``. The result names the model and LoRAs.

        The model's defaults are capped by the limits (a server's max_steps is not exceeded
        by a model's default steps). The LoRAs come back sorted by name: the same set asked
        in another order is the same request (one batch, one audit record's form); a LoRA
        named twice (option and tag alike) is refused rather than summed.
        """
        entry = self.model(requested.model)
        prompt, tagged = take_lora_tags(requested.prompt)
        check_weights(prompt)  # "(word:9)": a weight beyond 0–3 is refused, never clamped
        check_weights(requested.negative_prompt)
        options = validate(
            dataclasses.replace(requested, prompt=prompt),
            limits,
            _capped(entry.defaults, limits),
            entry.sizes,
        )
        loras = self._check_loras((*requested.loras, *tagged), entry)
        check_control(entry, requested.control or options.control, options.start)
        # A token whose embedding the model cannot load would be drawn as a plain word while
        # the record names the embedding: refused instead.
        for token in self.embeddings_in(options.prompt, options.negative_prompt):
            embedding = next(e for e in self.embeddings if e.token == token)
            if not _fits(embedding.dim, entry):
                raise InvalidOption(
                    "embedding", token,
                    f"one made for {entry.name}'s text encoder ({entry.cross_attention_dim} "
                    f"wide; {token} is {embedding.dim})",
                )  # fmt: skip
        return dataclasses.replace(options, model=entry.name, loras=loras)

    def _check_loras(
        self, choices: tuple[LoraChoice, ...], entry: ModelEntry
    ) -> tuple[LoraChoice, ...]:
        if len(choices) > MAX_LORAS:
            raise InvalidOption(
                "lora", ", ".join(str(c) for c in choices), f"at most {MAX_LORAS} LoRAs"
            )
        seen: set[str] = set()
        for choice in choices:
            if choice.name in seen:
                raise InvalidOption("lora", choice.name, "each LoRA at most once")
            seen.add(choice.name)
            weight = choice.weight
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not math.isfinite(weight)
                or not LORA_WEIGHT_MIN <= weight <= LORA_WEIGHT_MAX
            ):
                raise InvalidOption(
                    "lora weight", weight,
                    f"a number from {LORA_WEIGHT_MIN:g} to {LORA_WEIGHT_MAX:g} ({choice.name})",
                )  # fmt: skip
            lora = self.lora(choice.name)
            if not _fits(lora.cross_attention_dim, entry):
                fitting = ", ".join(f.name for f in self.loras_for(entry))
                raise InvalidOption(
                    "lora", choice.name,
                    f"a LoRA that fits {entry.name} ({entry.family}, attention "
                    f"{entry.cross_attention_dim} wide; {choice.name} is "
                    f"{lora.cross_attention_dim} wide): "
                    + (f"one of {fitting}" if fitting else "none here does"),
                )  # fmt: skip
        return tuple(sorted(LoraChoice(c.name, float(c.weight)) for c in choices))


def check_control(entry: ModelEntry, control: str | None, start: str = "text") -> None:
    """A ControlNet kind the model has (the catalog lists its folder), with a start from text;
    InvalidOption names the kind and what is offered."""
    if control is None:
        return
    offered = [kind for kind, _ in entry.controlnets]
    if control not in offered:
        allowed = (
            f"one of {', '.join(offered)}"
            if offered
            else f"none: model {entry.name} has no ControlNet"
        )
        raise InvalidOption("control_type", control, allowed)
    if start != "text":  # ControlNet conditions a drawing from noise (text), not an img2img
        raise InvalidOption("control", control, "a prompt without image:")


def _word(token: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(token)}(?![\w-])")


def _capped(defaults: ModelDefaults, limits: OptionLimits) -> ModelDefaults:
    """A model's defaults within the limits: a default is never what refuses a request."""
    guidance = min(max(defaults.guidance_scale, limits.min_guidance), limits.max_guidance)
    return dataclasses.replace(
        defaults, steps=min(defaults.steps, limits.max_steps), guidance_scale=guidance
    )


@contextmanager
def _named(setting: str) -> Iterator[None]:
    """A ModelLoadError from here on names the setting that led to the file first."""
    try:
        yield
    except ModelLoadError as error:
        said = str(error) if str(error).startswith(setting) else f"{setting}: {error}"
        raise CatalogError(said) from error


def _files(folder: Path | None, suffixes: tuple[str, ...], setting: str) -> list[Path]:
    if folder is None:
        return []
    if not folder.is_dir():
        raise ModelLoadError(f"{setting} {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in suffixes)
    for path in files:
        if not FILE_NAME.match(path.stem):
            raise ModelLoadError(
                f"{path}: the name {path.stem!r} cannot be typed in a request: rename the file "
                "to letters, digits, '.', '_' and '-' (64 at most, a letter or digit first)"
            )
    return files


def load_catalog(
    model: str,
    *,
    models_file: Path | None = None,
    lora_dir: Path | None = None,
    embedding_dir: Path | None = None,
) -> Catalog:
    """The operator's catalog; ModelLoadError names the bad file, entry and field.

    ``models_file`` (TOML) lists the models; without it ``model`` (SDBOT_MODEL) is the one.
    A folder given but missing is an error (a typo would otherwise hide every file in it).
    """
    with _named("SDBOT_MODELS_FILE" if models_file is not None else "SDBOT_MODEL"):
        models = (
            read_models_file(models_file)
            if models_file is not None
            else ((single_model(model), True),)
        )
    with _named("SDBOT_LORA_DIR"):
        loras = tuple(
            LoraFile(path.stem, path, lora_width(path))
            for path in _files(lora_dir, (".safetensors",), "SDBOT_LORA_DIR")
        )
    embeddings: list[EmbeddingFile] = []
    with _named("SDBOT_EMBEDDING_DIR"):
        for path in _files(embedding_dir, (".safetensors", ".pt"), "SDBOT_EMBEDDING_DIR"):
            if any(e.token == path.stem for e in embeddings):
                raise ModelLoadError(f"{path}: token {path.stem!r} is given by two files")
            embeddings.append(EmbeddingFile(path.stem, path, embedding_width(path)))
    default = next((entry for entry, is_default in models if is_default), models[0][0])
    return Catalog(
        models=tuple(entry for entry, _ in models),
        default_model=default.name,
        loras=loras,
        embeddings=tuple(embeddings),
    )
