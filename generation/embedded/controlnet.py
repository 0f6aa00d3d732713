"""Train the embedded model's canny ControlNet: the edges of a picture say where things go.

    python -m generation.embedded.controlnet --out generation/embedded/controlnet/canny
                                             [--steps N] [--seed S] [--threads T]
    python -m generation.embedded.controlnet --measure generation/embedded/controlnet/canny
                                             [--cases N] [--variants V]

diffusers' `ControlNetModel.from_unet` copies the embedded UNet's encoder half; its
conditioning embedding downsamples the 64 px control picture 4x, as the model's VAE does, to
the 16x16 latents. The training pictures are the project's own scenes (`scenes.py`); the control
picture of each is its canny edges, made by the bot's own function, and its captions leave
out the position, so only the edges can say where the object goes. The UNet, the text encoder
and the VAE stay frozen. Scenes with a `controlnet_eval.HELD_OUT` combination are never
rendered, so the measurement's control pictures are new to the ControlNet. The folder is saved
in float16 (diffusers loads it back as float32).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from generation.embedded.components import build_training_scheduler, torch_threads
from generation.embedded.controlnet_eval import (
    before_after,
    control_image,
    controlnet_pipeline,
    is_held_out,
    judge,
    placement_cases,
)
from generation.embedded.folder import load_pipeline
from generation.embedded.lora import encode_latents, encode_texts
from generation.embedded.progress import Progress, format_duration
from generation.embedded.prompts import held_out_prompts, normalise_prompt
from generation.embedded.scenes import CaptionOptions, caption_scene, render_scene, sample_scene
from generation.models import EMBEDDED_MODEL_DIR

log = logging.getLogger(__name__)

# Two stride-2 steps: 64 px control pictures to the 16x16 latents of the 4x VAE.
CONDITIONING_CHANNELS = (16, 32, 64)
NO_POSITION = CaptionOptions(say_position=0.0, say_twin_position=0.0)
SHIPPED_DIR = Path(__file__).resolve().parent / "controlnet" / "canny"


@dataclass(frozen=True)
class ControlNetConfig:
    out: Path
    model: Path = EMBEDDED_MODEL_DIR
    steps: int = 500
    seed: int = 0
    batch: int = 16
    lr: float = 1e-3
    dataset_size: int = 2000
    captions_per_scene: int = 2
    # Dropping the text now and then teaches the ControlNet the unconditional branch that
    # classifier-free guidance also runs it on.
    cfg_dropout: float = 0.1
    warmup_steps: int = 40
    # One thread: on the shared 2-core box two threads ran a step 10x slower (9 s against
    # 0.9 s at batch 16) while other work held the cores; None keeps torch's count.
    threads: int | None = 1
    log_every: int = 50
    half: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "dataset_size", "captions_per_scene"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.cfg_dropout < 1.0:
            raise ValueError(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")


@dataclass(frozen=True)
class ControlDataset:
    images: torch.Tensor  # (N, 3, 64, 64) uint8 scenes
    controls: torch.Tensor  # (N, 3, 64, 64) uint8 canny edges, white on black
    captions: tuple[tuple[str, ...], ...]  # N tuples of `captions_per_scene`, no position


def build_control_dataset(size: int, captions_per_scene: int, seed: int) -> ControlDataset:
    """`size` random scenes outside HELD_OUT, their edges and position-free captions."""
    rng = np.random.default_rng(seed)
    benchmark = held_out_prompts()
    images = np.empty((size, 64, 64, 3), dtype=np.uint8)
    controls = np.empty_like(images)
    captions: list[tuple[str, ...]] = []
    while len(captions) < size:
        scene = sample_scene(rng)
        if is_held_out(scene):
            continue
        i = len(captions)
        images[i] = render_scene(scene, rng)
        controls[i] = control_image(images[i])
        said: list[str] = []
        while len(said) < captions_per_scene:
            caption = caption_scene(scene, rng, NO_POSITION)
            if normalise_prompt(caption) not in benchmark:
                said.append(caption)
        captions.append(tuple(said))

    def chw(array: np.ndarray[Any, Any]) -> torch.Tensor:
        return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()

    return ControlDataset(chw(images), chw(controls), tuple(captions))


def build_controlnet(unet: Any) -> Any:
    """A ControlNet holding a copy of `unet`'s encoder, its output convolutions at zero."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS
    )


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))


def train(config: ControlNetConfig) -> Path:
    """Train the ControlNet and write its folder; returns the folder."""
    with torch_threads(config.threads):
        return _train(config)


def _train(config: ControlNetConfig) -> Path:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    pipe = load_pipeline(config.model)

    # 1. Data: scenes, their edges and captions; latents and caption states computed once.
    data = build_control_dataset(config.dataset_size, config.captions_per_scene, config.seed)
    latents = encode_latents(pipe.vae, data.images)
    conds = data.controls.float() / 255.0  # the pipeline's control preprocessing: [0, 1] RGB
    captions = [c for caps in data.captions for c in caps]
    hidden = encode_texts(pipe, captions).view(
        len(data.captions), config.captions_per_scene, -1, 128
    )
    uncond = encode_texts(pipe, [""])[0]
    log.info(
        "controlnet ◆ %d scenes encoded in %.0f s", len(latents), time.perf_counter() - started
    )

    # 2. The ControlNet beside the frozen UNet.
    unet = pipe.unet
    unet.requires_grad_(False)
    unet.eval()
    controlnet = build_controlnet(unet)
    controlnet.train()
    params = [p for p in controlnet.parameters() if p.requires_grad]
    log.info("controlnet ◆ %d trainable parameters", sum(p.numel() for p in params))
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    scheduler = build_training_scheduler()
    total_t = scheduler.config.num_train_timesteps

    # 3. The loop: v-prediction loss of the UNet steered by the ControlNet's residuals.
    progress = Progress("controlnet", config.steps, config.log_every)
    n, k = hidden.shape[:2]
    for step in range(config.steps):
        for group in optimiser.param_groups:
            group["lr"] = config.lr * _lr_factor(step, config.steps, config.warmup_steps)
        index = torch.randint(n, (config.batch,), generator=generator)
        which = torch.randint(k, (config.batch,), generator=generator)
        states = hidden[index, which]
        dropped = torch.rand(config.batch, generator=generator) < config.cfg_dropout
        states = torch.where(dropped[:, None, None], uncond[None], states)
        clean = latents[index]
        noise = torch.randn(clean.shape, generator=generator)
        t = torch.randint(total_t, (config.batch,), generator=generator)
        noisy = scheduler.add_noise(clean, noise, t)
        target = scheduler.get_velocity(clean, noise, t)
        down, mid = controlnet(
            noisy, t, encoder_hidden_states=states, controlnet_cond=conds[index], return_dict=False
        )
        predicted = unet(
            noisy,
            t,
            states,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
        loss = F.mse_loss(predicted, target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        progress.update(step + 1, loss.item())

    # 4. Save.
    controlnet.eval()
    if config.half:
        controlnet.to(torch.float16)
    controlnet.save_pretrained(str(config.out), safe_serialization=True)
    size = sum(p.stat().st_size for p in config.out.rglob("*") if p.is_file())
    elapsed = format_duration(time.perf_counter() - started)
    log.info("done ◆ %s ◆ %.0f KB ◆ total %s", config.out, size / 1024, elapsed)
    return config.out


# Command line --------------------------------------------------------------------------------


def run_measure(folder: Path, args: argparse.Namespace) -> None:
    chosen = placement_cases(args.cases)
    pipe = controlnet_pipeline(EMBEDDED_MODEL_DIR, folder)
    print("| control | conditioning scale | object in the edges' quadrant | colours as asked |")
    print("|---|---|---|---|")
    rows: list[tuple[str, float]] = [("none", 0.0)]
    rows += [("canny edges", scale) for scale in args.scales]
    for label, scale in rows:
        verdicts = judge(
            pipe,
            chosen,
            label != "none",
            variants=args.variants,
            seed=args.seed,
            control_scale=scale,
        )
        count = len(verdicts)
        placed = sum(v.placed for v in verdicts)
        colours = sum(v.colours for v in verdicts)
        print(
            f"| {label} | {scale:g} | {placed} of {count} ({100 * placed / count:.1f} %) "
            f"| {colours} of {count} ({100 * colours / count:.1f} %) |"
        )
    if args.picture is not None:
        before_after(pipe, chosen[:8], args.picture, seed=args.seed)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = ControlNetConfig(out=Path("."))
    parser = argparse.ArgumentParser(
        prog="python -m generation.embedded.controlnet", description=__doc__.split("\n\n")[0]
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", type=Path, help="ControlNet folder to train and write")
    action.add_argument("--measure", type=Path, help="ControlNet folder to measure")
    parser.add_argument("--cases", type=int, default=48, help="with --measure: held-out cases")
    parser.add_argument("--variants", type=int, default=4, help="with --measure: per case")
    parser.add_argument(
        "--scales", type=float, nargs="+", default=[1.0], help="with --measure: control scales"
    )
    parser.add_argument("--picture", type=Path, default=None, help="with --measure: PNG to draw")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--dataset-size", type=int, default=defaults.dataset_size)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch threads")
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument("--fp32", action="store_true", help="save float32 (default float16)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> ControlNetConfig:
    return ControlNetConfig(
        out=args.out,
        steps=args.steps,
        seed=args.seed,
        batch=args.batch,
        lr=args.lr,
        dataset_size=args.dataset_size,
        threads=args.threads,
        log_every=args.log_every,
        half=not args.fp32,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    if args.measure is not None:
        run_measure(args.measure, args)
        return 0
    train(config_from_args(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
