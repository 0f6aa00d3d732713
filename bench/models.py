"""`sdbot bench models`: what models, LoRAs and prompt conditioning cost in the worker.

In this process, on the embedded model with the shipped LoRA (``outline``) and embedding
(``warm``), through the real :class:`generation.worker.Worker` and its
:class:`generation.model_pool.ModelPool`: a models file names the embedded model twice
(``embedded-a``, the default, and ``embedded-b``: one source, two entries the pool loads
separately), and batches go through ``Worker.process`` as the worker process runs them.

1. Model switches, as the worker reports them (``WorkResult.model_load_ms``): a cold load
   (the other model stays loaded), a warm switch back to a loaded model, and a switch with the
   pool's budget lowered to hold one model (the other unloaded, this one loaded again). Each
   cold load reads files the OS has cached: "cold" means not in this process's memory.
2. LoRA: its first load into a freshly loaded model (``ModelPool.prepare``), and the adapter
   switch each batch makes (``PipelineRunner.use_loras``: ``set_adapters``, ``disable_lora``).
3. Diffusion per image (``WorkResult.diffusion_ms``, prompt conditioning included): the base
   model, the LoRA at weight 1 (its PEFT layers are not fused: extra compute), an A1111-weighted
   prompt and a prompt of three text-encoder windows, against the plain prompt.
4. ``generation.conditioning.encode`` alone for the plain, weighted and three-window prompts.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing import Pipe
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.app import worker_spec
from bot.settings import Settings
from generation.models import EMBEDDED_MODEL_DIR
from generation.options import LoraChoice, RequestedOptions
from generation.protocol import WorkBatch, WorkCancelled, WorkFailed, WorkRequest, WorkResult
from moderation.policy import ImagePolicy

if TYPE_CHECKING:
    from generation.worker import Worker

MODEL_A, MODEL_B = "embedded-a", "embedded-b"
LORA, EMBEDDING = "outline", "warm"
PLAIN = "a red circle on a blue background"
WEIGHTED = "a (red:1.4) circle on a [blue] background"
LONG = (
    "a red circle in the top left, a blue square in the top right, a green triangle in the "
    "bottom left and a yellow circle in the bottom right, a large orange square in the centre, "
    "a small purple triangle in the top left, a small blue circle in the bottom right, on a "
    "white background"
)  # 3 windows of the embedded text encoder (30 tokens each): checked when it runs
PROMPTS = {"plain": PLAIN, "weighted": WEIGHTED, "three_windows": LONG}
ONE_MODEL_ROOM = 1.5  # the lowered budget: one model and a half, so never two


@dataclass(frozen=True)
class ModelsReport:
    device: str
    threads: int
    model_mb: float
    variants: int
    steps: int
    size: str
    runs: int
    worker_start_ms: float  # Worker(): torch threads, the default model's first load, open_nsfw
    cold_load_ms: float
    warm_switch_ms: float
    one_model_switch_ms: float
    lora_first_load_ms: float
    lora_enable_ms: float  # use_loras([outline:1]) after a batch without: enable + set_adapters
    lora_disable_ms: float  # use_loras([]) after a batch with it: disable_lora
    diffusion_ms_per_image: dict[str, float]  # base, lora, weighted, three_windows
    encode_ms_per_prompt: dict[str, float]  # plain, weighted, three_windows

    def ratios(self) -> dict[str, float]:
        """Each diffusion figure against the base model's with the plain prompt."""
        base = self.diffusion_ms_per_image["base"]
        return {name: ms / base for name, ms in self.diffusion_ms_per_image.items()}

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "diffusion_ratio_to_base": self.ratios()}

    def to_text(self) -> str:
        ratios = self.ratios()
        encode_plain = self.encode_ms_per_prompt["plain"]
        labels = {
            "base": "base model, plain prompt",
            "lora": f"{LORA} LoRA at weight 1",
            "weighted": "weighted prompt",
            "three_windows": "three-window prompt",
        }
        lines = [
            f"embedded model ({self.model_mb:.1f} MB loaded) on {self.device}, "
            f"{self.threads} torch threads · median of {self.runs} runs",
            f"worker start (default model's first load) {self.worker_start_ms:8.1f} ms",
            "model switch (the batch's model_load_ms):",
            f"  cold load, the other model kept    {self.cold_load_ms:8.1f} ms",
            f"  warm switch back to a loaded one   {self.warm_switch_ms:8.1f} ms",
            f"  budget for one: unload + reload    {self.one_model_switch_ms:8.1f} ms",
            "LoRA:",
            f"  first load into a model            {self.lora_first_load_ms:8.1f} ms",
            f"  adapters on (set_adapters)         {self.lora_enable_ms:8.2f} ms a batch",
            f"  adapters off (disable_lora)        {self.lora_disable_ms:8.2f} ms a batch",
            f"diffusion per image ({self.variants} variants · {self.steps} steps · {self.size},"
            " conditioning included):",
        ]
        lines += [
            f"  {labels[name]:<34}{ms:8.1f} ms  ×{ratios[name]:.3f}"
            for name, ms in self.diffusion_ms_per_image.items()
        ]
        lines.append("conditioning.encode per prompt (prompt + negative):")
        lines += [
            f"  {name:<34}{ms:8.2f} ms  ×{ms / encode_plain:.2f}"
            for name, ms in self.encode_ms_per_prompt.items()
        ]
        return "\n".join(lines)


def _models_file(folder: Path) -> Path:
    path = folder / "models.toml"
    path.write_text(
        "".join(
            f'[[model]]\nname = "{name}"\nsource = "{EMBEDDED_MODEL_DIR}"\n'
            + ("default = true\n" if name == MODEL_A else "")
            for name in (MODEL_A, MODEL_B)
        ),
        encoding="utf-8",
    )
    return path


class _Bench:
    """A Worker in this process, its batches run as the worker process runs them."""

    def __init__(self, settings: Settings, *, variants: int, steps: int | None) -> None:
        from generation.worker import Worker

        self.settings = settings
        self.variants = variants
        self.steps = steps
        self.policy = ImagePolicy(settings.nsfw_threshold, settings.nsfw_strict_threshold)
        self.worker: Worker = Worker(worker_spec(settings))
        self.model_bytes = self.worker.pool.get(MODEL_A)[0].bytes  # the only one loaded yet
        # Room for both (SDBOT_MODEL_MEMORY_GB may say less), except while lowered to one.
        self.budget = max(self.worker.pool.budget_bytes, 3 * self.model_bytes)
        self.worker.pool.budget_bytes = self.budget
        self._ids = iter(range(1, 10**9))

    def request(
        self, model: str, prompt: str = PLAIN, *, lora: bool = False, variants: int | None = None
    ) -> WorkRequest:
        requested = RequestedOptions(
            prompt=prompt,
            seed=1,
            variants=variants or self.variants,
            steps=self.steps,
            model=model,
            loras=(LoraChoice(LORA, 1.0),) if lora else (),
        )
        options = self.settings.catalog().validate(requested, self.settings.catalog_limits())
        return WorkRequest(next(self._ids), options, self.policy)

    def run(self, request: WorkRequest) -> WorkResult:
        """One batch through ``Worker.process``; its answers are read as they come (a batch's
        PNGs do not fit a pipe's buffer: a reader must drain it)."""
        ours, theirs = Pipe()
        batch = WorkBatch((request,))
        thread = threading.Thread(target=self.worker.process, args=(batch, theirs))
        thread.start()
        try:
            while True:
                message = ours.recv()
                if isinstance(message, WorkResult):
                    return message
                if isinstance(message, WorkFailed | WorkCancelled):
                    raise RuntimeError(f"bench batch on {request.options.model}: {message}")
        finally:
            thread.join()
            ours.close()
            theirs.close()

    def switch_ms(self, model: str) -> float:
        """A one-image batch on ``model``: the model switch it waited for."""
        return self.run(self.request(model, variants=1)).model_load_ms

    def set_budget(self, one_model: bool) -> None:
        one = int(self.model_bytes * ONE_MODEL_ROOM)
        self.worker.pool.budget_bytes = one if one_model else self.budget


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _switches(bench: _Bench, runs: int) -> dict[str, list[float]]:
    """Per run, from only embedded-a loaded: b cold (a kept), b's LoRA, a warm, then the
    budget lowered to one model: b (a unloaded), a (b unloaded); the budget back."""
    pool = bench.worker.pool
    lora = (LoraChoice(LORA, 1.0),)
    out: dict[str, list[float]] = {"cold": [], "warm": [], "one": [], "lora": []}
    for _ in range(runs):
        assert pool.loaded == (MODEL_A,), pool.loaded
        out["cold"].append(bench.switch_ms(MODEL_B))
        out["lora"].append(_timed(lambda: pool.prepare(MODEL_B, lora)))
        out["warm"].append(bench.switch_ms(MODEL_A))
        assert list(pool.loaded) == [MODEL_B, MODEL_A], pool.loaded
        bench.set_budget(one_model=True)
        bench.switch_ms(MODEL_A)  # embedded-b unloaded: the pool's "budget lowered" path
        out["one"].append(bench.switch_ms(MODEL_B))
        out["one"].append(bench.switch_ms(MODEL_A))
        assert pool.loaded == (MODEL_A,), pool.loaded
        bench.set_budget(one_model=False)
    return out


def _adapter_switches(bench: _Bench, runs: int) -> tuple[list[float], list[float]]:
    """``use_loras`` as a batch calls it, alternating with the LoRA and without."""
    runner = bench.worker.pool.prepare(MODEL_A, (LoraChoice(LORA, 1.0),))[0].runner
    on, off = [], []
    for _ in range(runs * 10):
        on.append(_timed(lambda: runner.use_loras((LoraChoice(LORA, 1.0),))))
        off.append(_timed(lambda: runner.use_loras(())))
    return on, off


def _diffusion(bench: _Bench, runs: int) -> dict[str, list[float]]:
    kinds: dict[str, Callable[[], WorkRequest]] = {
        "base": lambda: bench.request(MODEL_A),
        "lora": lambda: bench.request(MODEL_A, lora=True),
        "weighted": lambda: bench.request(MODEL_A, WEIGHTED),
        "three_windows": lambda: bench.request(MODEL_A, LONG),
    }
    runner = bench.worker.pool.get(MODEL_A)[0].runner
    if (windows := runner.window_count(kinds["three_windows"]())) != 3:
        raise RuntimeError(f"the long prompt takes {windows} windows, not 3")
    for make in kinds.values():  # warm-up: the LoRA loaded, each shape run once
        bench.run(make())
    out: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(runs):  # interleaved: drift on a shared machine hits each kind alike
        for name, make in kinds.items():
            out[name].append(bench.run(make()).diffusion_ms / bench.variants)
    return out


def _encodes(bench: _Bench, runs: int) -> dict[str, list[float]]:
    from generation.conditioning import encode

    pipe = bench.worker.pool.get(MODEL_A)[0].runner.pipe
    negative = bench.request(MODEL_A).options.negative_prompt
    count = bench.variants
    out: dict[str, list[float]] = {name: [] for name in PROMPTS}
    for _ in range(runs * 10):
        for name, prompt in PROMPTS.items():
            prompts, negatives = [prompt] * count, [negative] * count
            out[name].append(_timed(partial(encode, pipe, prompts, negatives)) / count)
    return out


def measure_models(
    settings: Settings, *, runs: int, variants: int, steps: int | None
) -> ModelsReport:
    import torch

    with tempfile.TemporaryDirectory(prefix="sdbot-bench-models-") as scratch:
        settings = settings.model_copy(
            update={
                "model": str(EMBEDDED_MODEL_DIR),
                "models_file": _models_file(Path(scratch)),
                "lora_dir": EMBEDDED_MODEL_DIR.parent / "loras",
                "embedding_dir": EMBEDDED_MODEL_DIR.parent / "embeddings",
            }
        )
        catalog = settings.catalog()
        if [lora.name for lora in catalog.loras] != [LORA] or EMBEDDING not in [
            e.token for e in catalog.embeddings
        ]:
            raise RuntimeError(f"the shipped {LORA} LoRA or {EMBEDDING} embedding is missing")
        bench = _Bench(settings, variants=variants, steps=steps)
        try:
            first = bench.run(bench.request(MODEL_A))  # warm-up: the first pipeline call
            switches = _switches(bench, runs)
            on, off = _adapter_switches(bench, runs)
            diffusion = _diffusion(bench, runs)
            encodes = _encodes(bench, runs)
            options = bench.request(MODEL_A).options
        finally:
            bench.worker.post.close()
    return ModelsReport(
        device=bench.worker.device,
        threads=torch.get_num_threads(),
        model_mb=bench.model_bytes / 1e6,
        variants=variants,
        steps=options.steps,
        size=f"{options.width}x{options.height} (posted {first.post.images[0].width} px)",
        runs=runs,
        worker_start_ms=bench.worker.load_ms,
        cold_load_ms=statistics.median(switches["cold"]),
        warm_switch_ms=statistics.median(switches["warm"]),
        one_model_switch_ms=statistics.median(switches["one"]),
        lora_first_load_ms=statistics.median(switches["lora"]),
        lora_enable_ms=statistics.median(on),
        lora_disable_ms=statistics.median(off),
        diffusion_ms_per_image={k: statistics.median(v) for k, v in diffusion.items()},
        encode_ms_per_prompt={k: statistics.median(v) for k, v in encodes.items()},
    )
