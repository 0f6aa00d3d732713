"""Prompt-adherence benchmark for the embedded model (`sdbot bench adherence`).

Each fixed benchmark prompt (never used verbatim in training) is drawn in four variants; the
scene analyser reads every picture and we count how often the background, each object's colour,
shape and grid position, and the number of objects match the prompt. The same scoring run on
ground-truth renders of the same scenes gives the analyser's own accuracy: the benchmark's ceiling.

    python -m generation.embedded.adherence [--model DIR] [--steps 20] [--guidance-scale X]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from generation.embedded.analyser import DetectedObject, SceneAnalysis, analyse
from generation.embedded.folder import load_pipeline, read_defaults
from generation.embedded.prompts import BenchmarkCase, benchmark_cases
from generation.embedded.scenes import Scene, SceneObject, render_scene
from generation.fast_path import FastPath, apply_fast_path
from generation.models import EMBEDDED_MODEL_DIR

log = logging.getLogger(__name__)

ATTRIBUTES = ("colour", "background", "shape", "position", "count")
GOALS: dict[str, float] = {
    "colour": 0.90,
    "background": 0.95,
    "shape": 0.80,
    "position": 0.60,
    "count": 0.90,
}
VARIANTS = 4


@dataclass
class _Tally:
    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ATTRIBUTES, 0))
    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ATTRIBUTES, 0))

    def add(self, attribute: str, ok: bool) -> None:
        self.correct[attribute] += int(ok)
        self.total[attribute] += 1

    def shares(self) -> dict[str, float]:
        return {a: self.correct[a] / self.total[a] if self.total[a] else 0.0 for a in ATTRIBUTES}


@dataclass(frozen=True)
class AdherenceReport:
    """Shares (0..1) of correct attributes on generated pictures and on ground-truth renders."""

    model_dir: str
    steps: int
    guidance_scale: float
    seed: int
    prompts: int
    images: int
    colour: float
    background: float
    shape: float
    position: float
    count: float
    two_object_count: float  # count share on the two-object prompts alone
    analyser_colour: float
    analyser_background: float
    analyser_shape: float
    analyser_position: float
    analyser_count: float
    seconds: float
    fast: str = ""  # SDBOT_FAST_PATH's switches the pictures were drawn with
    ms_per_image: float = 0.0  # the pipeline calls' time per picture
    comparison: FastComparison | None = None

    def meets_goals(self) -> dict[str, bool]:
        return {a: getattr(self, a) >= GOALS[a] for a in ATTRIBUTES}

    def to_dict(self) -> dict[str, object]:
        return {
            "model_dir": self.model_dir,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "seed": self.seed,
            "prompts": self.prompts,
            "images": self.images,
            "seconds": round(self.seconds, 2),
            "generated": {a: getattr(self, a) for a in ATTRIBUTES},
            "two_object_count": self.two_object_count,
            "analyser_on_ground_truth": {a: getattr(self, f"analyser_{a}") for a in ATTRIBUTES},
            "goals": dict(GOALS),
            "meets_goals": self.meets_goals(),
            "fast": self.fast,
            "ms_per_image": round(self.ms_per_image, 1),
            "comparison": self.comparison.to_dict() if self.comparison else None,
        }

    def to_text(self) -> str:
        lines = [
            f"adherence ◆ {self.model_dir}",
            f"{self.prompts} prompts x {VARIANTS} variants = {self.images} images ◆ "
            f"{self.steps} steps ◆ guidance {self.guidance_scale:g} ◆ seed {self.seed} ◆ "
            f"{self.seconds:.1f} s ◆ fast path: {self.fast or 'none'} ◆ "
            f"{self.ms_per_image:.0f} ms an image",
            "",
            f"{'attribute':<12}{'generated':>10}{'goal':>8}{'met':>6}{'analyser on truth':>20}",
        ]
        met = self.meets_goals()
        for a in ATTRIBUTES:
            lines.append(
                f"{a:<12}{getattr(self, a):>10.1%}{GOALS[a]:>8.0%}"
                f"{'yes' if met[a] else 'NO':>6}{getattr(self, f'analyser_{a}'):>20.1%}"
            )
        lines.append(f"{'(two-object count)':<22}{self.two_object_count:>6.1%}")
        if self.comparison is not None:
            lines += ["", self.comparison.to_text()]
        return "\n".join(lines)


@dataclass(frozen=True)
class FastComparison:
    """The fast path's pictures against the plain path's, same prompts and seeds."""

    fast: str
    images: int
    mean_abs_diff: float  # in 0..255 levels
    psnr_db: float
    plain_ms_per_image: float
    fast_ms_per_image: float

    def to_dict(self) -> dict[str, object]:
        return {key: round(v, 2) if isinstance(v, float) else v for key, v in vars(self).items()}

    def to_text(self) -> str:
        speedup = self.plain_ms_per_image / self.fast_ms_per_image if self.fast_ms_per_image else 0
        return (
            f"{self.fast} against the plain path, {self.images} images: mean abs diff "
            f"{self.mean_abs_diff:.2f} levels ◆ PSNR {self.psnr_db:.1f} dB ◆ "
            f"{self.plain_ms_per_image:.0f} → {self.fast_ms_per_image:.0f} ms an image "
            f"(×{speedup:.2f})"
        )


# 1. Scoring one picture against the scene its prompt asked for ----------------------------


def _object_score(expected: SceneObject, found: DetectedObject | None, position: bool) -> int:
    if found is None:
        return 0
    score = int(found.colour == expected.colour) + int(found.shape == expected.shape)
    return score + int(position and found.position == expected.position)


def _match(
    expected: tuple[SceneObject, ...], found: tuple[DetectedObject, ...], position: bool
) -> tuple[DetectedObject | None, ...]:
    """The assignment of detected objects to expected ones that agrees on most attributes."""
    candidates: list[DetectedObject | None] = [*found[:4]]
    candidates += [None] * len(expected)
    best: tuple[DetectedObject | None, ...] = (None,) * len(expected)
    best_score = -1
    for chosen in itertools.permutations(candidates, len(expected)):
        score = sum(_object_score(e, f, position) for e, f in zip(expected, chosen, strict=True))
        if score > best_score:
            best, best_score = chosen, score
    return best


def score_picture(
    case: BenchmarkCase, analysis: SceneAnalysis, tally: _Tally, pair_tally: _Tally
) -> None:
    scene: Scene = case.scene
    tally.add("background", analysis.background == scene.background)
    count_ok = len(analysis.objects) == len(scene.objects)
    tally.add("count", count_ok)
    if len(scene.objects) == 2:
        pair_tally.add("count", count_ok)
    matched = _match(scene.objects, analysis.objects, case.position_stated)
    for expected, found in zip(scene.objects, matched, strict=True):
        tally.add("colour", found is not None and found.colour == expected.colour)
        tally.add("shape", found is not None and found.shape == expected.shape)
        if case.position_stated:
            tally.add("position", found is not None and found.position == expected.position)


# 2. The benchmark ---------------------------------------------------------------------------


def _to_uint8(images: NDArray[np.floating]) -> NDArray[np.uint8]:
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def analyser_accuracy(cases: Sequence[BenchmarkCase], seed: int) -> dict[str, float]:
    """The analyser's shares on ground-truth renders of the benchmark scenes."""
    rng = np.random.default_rng(seed)
    tally, pairs = _Tally(), _Tally()
    for case in cases:
        for _ in range(VARIANTS):
            score_picture(case, analyse(render_scene(case.scene, rng)), tally, pairs)
    return tally.shares()


def run_adherence(
    model_dir: Path,
    *,
    steps: int = 20,
    guidance_scale: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
    fast: FastPath | None = None,
    compare: int = 0,
) -> AdherenceReport:
    """Generate every benchmark prompt in four variants and score them with the analyser;
    with ``fast``, on the fast path, and with ``compare`` its pictures of that many prompts
    against the plain path's."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"no model_index.json in {model_dir}")
    started = time.perf_counter()
    # 1. Model and settings.
    if guidance_scale is None:
        guidance_scale = read_defaults(model_dir).guidance_scale
    fast = fast or FastPath()
    pipe = load_pipeline(model_dir, device)
    apply_fast_path(pipe, fast, device)
    cases = benchmark_cases()
    # 2. Generate and score.
    tally, pairs = _Tally(), _Tally()
    _draw(pipe, cases[0], 1, guidance_scale, seed, device)  # a first call's set-up, untimed
    drawing = 0.0
    for index, case in enumerate(cases):
        draw_started = time.perf_counter()
        images = _draw(pipe, case, steps, guidance_scale, seed * 100_003 + index, device)
        drawing += time.perf_counter() - draw_started
        for image in images:
            score_picture(case, analyse(image), tally, pairs)
        if progress is not None:
            progress(f"{index + 1}/{len(cases)} {case.prompt}")
    # 3. The judge's own accuracy on ground truth.
    truth = analyser_accuracy(cases, seed)
    shares = tally.shares()
    return AdherenceReport(
        model_dir=str(model_dir),
        steps=steps,
        guidance_scale=guidance_scale,
        seed=seed,
        prompts=len(cases),
        images=len(cases) * VARIANTS,
        colour=shares["colour"],
        background=shares["background"],
        shape=shares["shape"],
        position=shares["position"],
        count=shares["count"],
        two_object_count=pairs.shares()["count"],
        analyser_colour=truth["colour"],
        analyser_background=truth["background"],
        analyser_shape=truth["shape"],
        analyser_position=truth["position"],
        analyser_count=truth["count"],
        seconds=time.perf_counter() - started,
        fast=fast.describe(),
        ms_per_image=drawing * 1000 / (len(cases) * VARIANTS),
        comparison=compare_fast(
            model_dir, pipe, fast, cases[:compare], steps, guidance_scale, seed, device
        )
        if compare and fast.describe()
        else None,
    )


def _draw(
    pipe: Any, case: BenchmarkCase, steps: int, guidance_scale: float, seed: int, device: str
) -> NDArray[np.uint8]:
    """The case's four variants (one generator for the call); a DeepCache starts afresh."""
    from generation.fast_unet import FastUNet

    if (fast := FastUNet.of(pipe.unet)) is not None:
        fast.begin()
    output = pipe(
        [case.prompt] * VARIANTS,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        generator=torch.Generator(device=device).manual_seed(seed),
        output_type="np",
    )
    return _to_uint8(output.images)


def compare_fast(
    model_dir: Path,
    fast_pipe: Any,
    fast: FastPath,
    cases: Sequence[BenchmarkCase],
    steps: int,
    guidance_scale: float,
    seed: int,
    device: str,
) -> FastComparison:
    """``fast_pipe``'s pictures of ``cases`` against a plain pipeline's, drawn in turns (one
    prompt each way, so that a busy machine slows both alike): pixel difference and time."""
    plain_pipe = load_pipeline(model_dir, device)
    _draw(plain_pipe, cases[0], 1, guidance_scale, seed, device)  # its set-up, untimed
    diffs, seconds = [], {"plain": 0.0, "fast": 0.0}
    for index, case in enumerate(cases):
        drawn = {}
        for name, pipe in (("plain", plain_pipe), ("fast", fast_pipe)):
            started = time.perf_counter()
            drawn[name] = _draw(pipe, case, steps, guidance_scale, seed * 100_003 + index, device)
            seconds[name] += time.perf_counter() - started
        diffs.append(drawn["fast"].astype(np.float64) - drawn["plain"].astype(np.float64))
    errors = np.concatenate([d.ravel() for d in diffs])
    mse = float(np.mean(errors**2))
    images = len(cases) * VARIANTS
    return FastComparison(
        fast=fast.describe(),
        images=images,
        mean_abs_diff=float(np.mean(np.abs(errors))),
        psnr_db=10 * np.log10(255**2 / mse) if mse else float("inf"),
        plain_ms_per_image=seconds["plain"] * 1000 / images,
        fast_ms_per_image=seconds["fast"] * 1000 / images,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m generation.embedded.adherence", description="Prompt-adherence benchmark."
    )
    parser.add_argument("--model", type=Path, default=EMBEDDED_MODEL_DIR)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--guidance-scale", type=float, default=None, help="default: the model's sdbot.json"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--fast", default="", help="fast-path switches (SDBOT_FAST_PATH's)")
    parser.add_argument("--compare", type=int, default=8, help="prompts compared with --fast")
    parser.add_argument("--json", action="store_true", help="print to_dict() as JSON")
    parser.add_argument("--quiet", action="store_true", help="no per-prompt progress")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = run_adherence(
        args.model,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        seed=args.seed,
        device=args.device,
        progress=None if args.quiet else lambda line: print(line, file=sys.stderr),
        fast=FastPath.parse(args.fast),
        compare=args.compare,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
