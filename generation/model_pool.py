"""The worker's loaded models: the most recently used ones within a memory budget, each with its
runner, its own safety checker, the catalog's embeddings that fit it and the LoRAs asked of it.

A model is loaded the first time a batch names it. Before a load, the least recently used
models are unloaded until the newcomer is expected to fit (its size when it was loaded before,
else its weight files on disk); after it, until the models' parameters and buffers together
are within the budget again. The model in use is never unloaded: one larger than the budget
still loads, with a warning in the log. Each switch's time is logged and reported with the
batch's results (``WorkResult.model_load_ms``).

A LoRA is loaded into a model once, as an adapter named after it, the first time a batch asks
for it there; one that does not fit the model (shapes, layers it does not have, none it has)
fails that batch with a one-line reason and leaves the model as it was. A ControlNet is loaded
once per model and kind, the first time a batch asks for it, from the folder the catalog names
(local files only, the model's device and dtype); it counts in the model's size.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from generation.catalog import Catalog, LoraFile, ModelEntry
from generation.errors import ModelLoadError
from generation.fast_path import FastPath, apply_fast_path
from generation.models import SourceKind
from generation.options import LoraChoice
from generation.pipeline import ModelSafetyChecker, PipelineRunner

log = logging.getLogger(__name__)

Loader = Callable[[ModelEntry, str, torch.dtype], Any]
GPU_SHARE, RAM_SHARE = 0.8, 0.5  # the automatic budget: of the GPU's memory, of the RAM
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt")
_SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) from "
    r"checkpoint, the shape in current model is torch\.Size\((\[.*?\])\)"
)


def memory_budget(memory_gb: float, device: str) -> int:
    """Bytes the loaded models may take: ``memory_gb`` when set, else 80 % of the GPU's
    memory on CUDA, or half the machine's RAM (CPU, and MPS whose memory is the RAM)."""
    if memory_gb > 0:
        return int(memory_gb * 1e9)
    if device.startswith("cuda"):
        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        return int(total * GPU_SHARE)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * RAM_SHARE)


def module_bytes(*modules: Any) -> int:
    """The parameters' and buffers' bytes of ``modules`` (torch modules; others count 0)."""
    total = 0
    for module in modules:
        if isinstance(module, torch.nn.Module):
            tensors = [*module.parameters(), *module.buffers()]
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def short_hash(data: bytes) -> str:
    """A file's short hash as A1111 writes it in ``Lora hashes``: sha256's first 12 digits."""
    return hashlib.sha256(data).hexdigest()[:12]


@dataclass
class LoadedModel:
    """A catalog model in memory: what a batch on it needs."""

    entry: ModelEntry
    runner: PipelineRunner
    safety: ModelSafetyChecker | None
    embeddings: tuple[str, ...] = ()  # the catalog's tokens loaded into its text encoder
    lora_hashes: dict[str, str] = field(default_factory=dict)  # adapter name → short hash
    fast: tuple[str, ...] = ()  # the fast-path switches applied to it

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def bytes(self) -> int:
        pipe = self.runner.pipe
        checker = self.safety.checker if self.safety else None
        controlnets = self.runner.controlnets.values()
        return module_bytes(*pipe.components.values(), checker, *controlnets)


class ModelPool:
    """Loaded models by catalog name, least recently used first."""

    def __init__(
        self,
        catalog: Catalog,
        device: str,
        dtype: torch.dtype,
        budget_bytes: int,
        loader: Loader | None = None,
        fast: FastPath | None = None,
    ) -> None:
        self.catalog = catalog
        self.fast = fast or FastPath()  # applied to each model as it loads
        self.device = device
        self.dtype = dtype
        self.budget_bytes = budget_bytes
        self._loader = loader or _load_pipeline
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._sizes: dict[str, int] = {}  # what each model took when it was last loaded

    @property
    def loaded(self) -> tuple[str, ...]:
        """The loaded models' names, least recently used first."""
        return tuple(self._loaded)

    def entry(self, name: str) -> ModelEntry:
        """The catalog's model ``name`` ("" is the default model)."""
        wanted = name or self.catalog.default_model
        for entry in self.catalog.models:
            if entry.name == wanted:
                return entry
        names = ", ".join(entry.name for entry in self.catalog.models)
        raise ModelLoadError(f"model {wanted!r} is not in the worker's list ({names})")

    def prepare(
        self, model: str, loras: Sequence[LoraChoice] = (), control: str | None = None
    ) -> tuple[LoadedModel, float]:
        """The model a batch names, loaded, with its LoRAs loaded as adapters and its ControlNet
        ``control``, and the time its load took in ms (0 when it was loaded already)."""
        loaded, load_ms = self.get(model)
        missing = [lora.name for lora in loras if lora.name not in loaded.runner.adapters]
        for name in missing:
            self._load_lora(loaded, name)
        if control is not None and control not in loaded.runner.controlnets:
            started = time.perf_counter()
            self._load_controlnet(loaded, control)
            load_ms += (time.perf_counter() - started) * 1000
            missing.append(control)
        if missing:  # its adapters and ControlNets count too
            self._sizes[loaded.name] = loaded.bytes
            self._unload_until(0)
        return loaded, load_ms

    def get(self, name: str) -> tuple[LoadedModel, float]:
        entry = self.entry(name)
        if entry.name in self._loaded:
            self._loaded.move_to_end(entry.name)
            self._unload_until(0)  # the others, if the budget was lowered
            return self._loaded[entry.name], 0.0
        # 1. Room for it, then the pipeline, its checker, its embeddings and its runner.
        started = time.perf_counter()
        self._unload_until(self._expected_bytes(entry))
        pipe = self._loader(entry, self.device, self.dtype)
        safety = ModelSafetyChecker.detach_from(pipe, self.device, self.dtype)
        fast = apply_fast_path(pipe, self.fast, self.device)
        runner = PipelineRunner(pipe, fast=self.fast)
        loaded = LoadedModel(entry, runner, safety, self._embed(entry, pipe), fast=fast)
        self._loaded[entry.name] = loaded
        # 2. Within the budget again: the one just loaded stays, however large.
        size = self._sizes[entry.name] = loaded.bytes
        self._unload_until(0)
        if size > self.budget_bytes:
            log.warning(
                "model %s takes %.0f MB, more than the %.0f MB budget: loaded alone",
                entry.name,
                size / 1e6,
                self.budget_bytes / 1e6,
            )
        load_ms = (time.perf_counter() - started) * 1000
        log.info(
            "model %s loaded ◆ %.0f ms ◆ %.0f MB ◆ in memory: %s",
            entry.name,
            load_ms,
            size / 1e6,
            ", ".join(self._loaded),
        )
        return loaded, load_ms

    def _expected_bytes(self, entry: ModelEntry) -> int:
        """What ``entry`` will take: as much as last time, else its weight files (more than it
        will take when a folder holds several variants or the dtype is smaller: a first load
        may unload more than it needed to, never less)."""
        if entry.name in self._sizes:
            return self._sizes[entry.name]
        path = entry.source.path
        if entry.source.kind is SourceKind.SINGLE_FILE:
            return path.stat().st_size if path.is_file() else 0
        if entry.source.kind is SourceKind.FOLDER:
            files = [f for f in path.rglob("*") if f.suffix in _WEIGHT_SUFFIXES]
            return sum(f.stat().st_size for f in files if f.is_file())
        return 0  # a hub id: known once loaded

    def _unload_until(self, incoming: int) -> None:
        """Unloads the least recently used models while those loaded and ``incoming`` bytes more
        would not fit the budget. With nothing incoming (after a load, or a batch on a loaded
        model) the most recently used one stays: it is the one the batch runs on."""
        unloaded = False
        while len(self._loaded) > (1 if incoming == 0 else 0):
            used = sum(self._sizes[name] for name in self._loaded)
            if used + incoming <= self.budget_bytes:
                break
            name, _ = self._loaded.popitem(last=False)
            log.info("model %s unloaded ◆ %.0f MB freed", name, self._sizes[name] / 1e6)
            unloaded = True
        if unloaded:  # its tensors go now, not at the collector's leisure
            gc.collect()
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()

    def _embed(self, entry: ModelEntry, pipe: Any) -> tuple[str, ...]:
        """Loads the catalog's textual-inversion embeddings that fit the text encoder (SDXL:
        both, from a file's ``clip_l`` and ``clip_g`` vectors; its width is their sum)."""
        found = [getattr(pipe, name, None) for name in ("text_encoder", "text_encoder_2")]
        encoders = [encoder for encoder in found if encoder is not None]
        if not encoders or not self.catalog.embeddings:
            return ()
        width = sum(encoder.get_input_embeddings().weight.shape[-1] for encoder in encoders)
        tokens = []
        for embedding in self.catalog.embeddings:
            if embedding.dim is not None and embedding.dim != width:
                continue
            try:
                _load_embedding(pipe, embedding.path, embedding.token, two=len(encoders) == 2)
            except (OSError, ValueError, RuntimeError, KeyError) as error:
                log.warning(
                    "model %s: embedding %s not loaded: %s", entry.name, embedding.token, error
                )
                continue
            tokens.append(embedding.token)
        return tuple(tokens)

    def _lora_file(self, name: str) -> LoraFile:
        for lora in self.catalog.loras:
            if lora.name == name:
                return lora
        names = ", ".join(lora.name for lora in self.catalog.loras) or "none"
        raise ModelLoadError(f"LoRA {name!r} is not in the worker's list ({names})")

    def _load_lora(self, model: LoadedModel, name: str) -> None:
        """Loads LoRA ``name`` into ``model`` as the adapter ``name``, or raises ModelLoadError
        saying why it does not fit (the model is left without any of its layers)."""
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        lora = self._lora_file(name)
        started = time.perf_counter()
        try:
            data = Path(lora.path).read_bytes()
            state = load_safetensors(data)
        except (OSError, SafetensorError) as error:
            raise ModelLoadError(f"LoRA {name!r} could not be read: {error}") from error
        pipe = model.runner.pipe
        problem = None
        with _diffusers_warnings() as said:
            try:
                pipe.load_lora_weights(state, adapter_name=name)
            except (ValueError, RuntimeError, KeyError, TypeError) as error:
                problem = _why_not(str(error))
            if problem is None:
                problem = _why_not("\n".join(said), layers=_adapter_layers(pipe, name))
            if problem is not None and name in _adapter_names(pipe):
                pipe.delete_adapters(name)
        if problem is not None:
            raise ModelLoadError(f"LoRA {name!r} does not fit model {model.name!r}: {problem}")
        model.runner.adapters.add(name)
        model.lora_hashes[name] = short_hash(data)
        log.info(
            "LoRA %s loaded into %s ◆ %d layers ◆ %.0f ms",
            name,
            model.name,
            _adapter_layers(pipe, name),
            (time.perf_counter() - started) * 1000,
        )

    def _load_controlnet(self, model: LoadedModel, kind: str) -> None:
        """Loads ``model``'s ControlNet for ``kind`` from its catalog folder, or raises
        ModelLoadError saying why not."""
        from generation.loading import load_controlnet

        folder = model.entry.controlnet(kind)
        if folder is None:
            offered = ", ".join(k for k, _ in model.entry.controlnets) or "none"
            raise ModelLoadError(
                f"model {model.name!r} has no {kind} ControlNet (it has: {offered})"
            )
        started = time.perf_counter()
        controlnet = load_controlnet(folder, self.device, self.dtype)
        if self.fast.channels_last:
            controlnet.to(memory_format=torch.channels_last)
        model.runner.controlnets[kind] = controlnet
        log.info(
            "ControlNet %s loaded for %s ◆ %.0f MB ◆ %.0f ms",
            kind,
            model.name,
            module_bytes(controlnet) / 1e6,
            (time.perf_counter() - started) * 1000,
        )


def _load_pipeline(entry: ModelEntry, device: str, dtype: torch.dtype) -> Any:
    from generation.loading import load_pipeline

    return load_pipeline(entry, device, dtype)


def _load_embedding(pipe: Any, path: Path, token: str, *, two: bool) -> None:
    if not two:
        pipe.load_textual_inversion(str(path), token=token)
        return
    from safetensors.torch import load_file

    vectors = load_file(path)
    for key, encoder, tokenizer in (
        ("clip_l", "text_encoder", "tokenizer"),
        ("clip_g", "text_encoder_2", "tokenizer_2"),
    ):
        pipe.load_textual_inversion(
            vectors[key],
            token=token,
            text_encoder=getattr(pipe, encoder),
            tokenizer=getattr(pipe, tokenizer),
        )


def _why_not(text: str, layers: int | None = None) -> str | None:
    """One line from diffusers' error or warnings when a LoRA did not fit (None: it did)."""
    if mismatches := _SIZE_MISMATCH.findall(text):
        key, theirs, ours = mismatches[0]
        more = f" and {len(mismatches) - 1} more" if len(mismatches) > 1 else ""
        return f"{key} is {theirs} in the file, {ours} in the model{more}"
    for marker in ("unexpected keys", "missing keys"):
        if marker in text:
            keys = re.findall(r"([\w.]+?)\.(?:lora_|lokr_)\w", text.split(marker, 1)[1])
            layers_named = sorted(set(keys)) or ["?"]
            count = len(layers_named)
            verb = "is" if count == 1 else "are"
            return f"{count} of its layers {verb} not in the model (such as {layers_named[0]})"
    if layers == 0:
        return "none of its layers are in the model"
    if layers is None:
        return text.strip().splitlines()[0] if text.strip() else "diffusers refused it"
    return None


def _adapter_names(pipe: Any) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def _adapter_layers(pipe: Any, name: str) -> int:
    """How many of the pipeline's layers took LoRA ``name``'s weights."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(
        1
        for component in pipe.components.values()
        if isinstance(component, torch.nn.Module)
        for module in component.modules()
        if isinstance(module, BaseTunerLayer) and name in getattr(module, "lora_A", {})
    )


@contextmanager
def _diffusers_warnings() -> Iterator[list[str]]:
    """Collects what diffusers logs as warnings while the block runs (it only warns of a
    LoRA's layers the model lacks) instead of printing it; PEFT's Python warnings (a second
    adapter in a model) are expected and go to the debug log."""
    logger = logging.getLogger("diffusers")
    caught: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record.getMessage())

    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    logger.handlers, logger.propagate = [_Collect(logging.WARNING)], False
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as python_warnings:
            warnings.simplefilter("always")
            yield caught
        for warning in python_warnings:
            log.debug("while loading a LoRA: %s", warning.message)
    finally:
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)
