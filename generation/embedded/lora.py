"""Train the embedded model's `outline` LoRA: every shape drawn with a dark ring.

    python -m generation.embedded.lora --out generation/embedded/loras/outline.safetensors
                                       [--steps N] [--rank R] [--seed S] [--threads T]
    python -m generation.embedded.lora --measure generation/embedded/loras/outline.safetensors
                                       [--picture before-after.png]

The training pictures are the project's own scenes (`scenes.py`) with `style.draw_outline`
applied; the captions are the plain scene captions, so the style lives in the LoRA's weights,
not in a word. A rank-R LoRA (PEFT) sits on the UNet's attention projections (to_q, to_k, to_v,
to_out.0) and its resnet convolutions (conv1, conv2); the text encoder, the VAE and the UNet's
own weights stay frozen. The file is in diffusers' LoRA format, so
`pipe.load_lora_weights(path, adapter_name="outline")` and `pipe.set_adapters(...)` use it.
`--measure` prints the outline score (`style.outline_score`) and colour/shape adherence at a
few weights on a fixed prompt set, and can draw a before/after picture.
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
from numpy.typing import NDArray
from PIL import Image

from generation.embedded.analyser import analyse
from generation.embedded.components import build_training_scheduler, torch_threads
from generation.embedded.dataset import build_dataset, tokenize_captions
from generation.embedded.folder import load_pipeline
from generation.embedded.progress import Progress, format_duration
from generation.embedded.prompts import BenchmarkCase, benchmark_cases
from generation.embedded.style import (
    draw_outline,
    outline_score,
    ring_darkness,
    without_outline,
)
from generation.models import EMBEDDED_MODEL_DIR

log = logging.getLogger(__name__)

TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2")
MEASURE_WEIGHTS = (0.0, 0.5, 1.0, 1.5)


@dataclass(frozen=True)
class LoraConfig:
    out: Path
    model: Path = EMBEDDED_MODEL_DIR
    steps: int = 1500
    rank: int = 8
    seed: int = 0
    batch: int = 16
    lr: float = 5e-3
    dataset_size: int = 1500
    # The ring is a fine detail, drawn at the low-noise steps: training only below this timestep
    # spends the few CPU minutes there (the layout, fixed at the noisy steps, stays the base's).
    timestep_max: int = 600
    captions_per_scene: int = 2
    cfg_dropout: float = 0.1
    warmup_steps: int = 40
    threads: int | None = None
    log_every: int = 50

    def __post_init__(self) -> None:
        for name in ("steps", "rank", "batch", "dataset_size", "captions_per_scene"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.cfg_dropout < 1.0:
            raise ValueError(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")


def outlined_images(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, 64, 64) uint8 scenes with `draw_outline` applied to each."""
    hwc = images.permute(0, 2, 3, 1).numpy()
    drawn = np.stack([draw_outline(image) for image in hwc])
    return torch.from_numpy(drawn).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def encode_latents(vae: Any, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Scaled posterior means, as the UNet sees latents."""
    chunks = [
        vae.encode(images[i : i + batch].float() / 127.5 - 1.0).latent_dist.mean
        for i in range(0, len(images), batch)
    ]
    return torch.cat(chunks) * float(vae.config.scaling_factor)


@torch.no_grad()
def encode_texts(pipe: Any, captions: list[str], batch: int = 512) -> torch.Tensor:
    """The frozen text encoder's hidden states for each caption."""
    ids = tokenize_captions(pipe.tokenizer, captions)
    chunks = [pipe.text_encoder(ids[i : i + batch])[0] for i in range(0, len(ids), batch)]
    return torch.cat(chunks)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))


def add_lora(unet: Any, rank: int) -> list[torch.nn.Parameter]:
    """Freeze the UNet and give it a fresh LoRA adapter; returns the trainable parameters."""
    from peft import LoraConfig as PeftLoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(
        PeftLoraConfig(
            r=rank,
            lora_alpha=rank,
            init_lora_weights="gaussian",
            target_modules=list(TARGET_MODULES),
        )
    )
    return [p for p in unet.parameters() if p.requires_grad]


def save_lora(unet: Any, out: Path) -> None:
    """Write the UNet's LoRA for `load_lora_weights`: keys `unet.<module>.lora_A/B.weight`, fp16.

    PEFT's own key names, as diffusers saves them today. Not through
    `convert_state_dict_to_diffusers`: it renames the attention keys to the old `lora.down/up`
    form but leaves the convolutions' `lora_A/B`, and diffusers' loader, reading the first key,
    then silently drops the attention half.
    """
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    layers = {k: v.to(torch.float16) for k, v in get_peft_model_state_dict(unet).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        str(out.parent), unet_lora_layers=layers, weight_name=out.name, safe_serialization=True
    )


def train(config: LoraConfig) -> Path:
    """Train the LoRA and write it; returns the file."""
    with torch_threads(config.threads):
        return _train(config)


def _train(config: LoraConfig) -> Path:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    pipe = load_pipeline(config.model)

    # 1. Data: the project's scenes, outlined; latents and caption states computed once.
    data = build_dataset(config.dataset_size, config.captions_per_scene, config.seed)
    latents = encode_latents(pipe.vae, outlined_images(data.images))
    captions = [c for caps in data.captions for c in caps]
    hidden = encode_texts(pipe, captions).view(
        len(data.captions), config.captions_per_scene, -1, 128
    )
    uncond = encode_texts(pipe, [""])[0]
    log.info(
        "lora ◆ %d outlined scenes encoded in %.0f s", len(latents), time.perf_counter() - started
    )

    # 2. The adapter and its optimiser.
    unet = pipe.unet
    params = add_lora(unet, config.rank)
    log.info(
        "lora ◆ rank %d ◆ %d trainable parameters", config.rank, sum(p.numel() for p in params)
    )
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    scheduler = build_training_scheduler()
    total_t = min(config.timestep_max, scheduler.config.num_train_timesteps)
    unet.train()
    progress = Progress("lora", config.steps, config.log_every)
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
        loss = F.mse_loss(unet(noisy, t, states).sample, target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        progress.update(step + 1, loss.item())
    unet.eval()
    save_lora(unet, config.out)
    elapsed = format_duration(time.perf_counter() - started)
    size = config.out.stat().st_size
    log.info("done ◆ %s ◆ %.0f KB ◆ total %s", config.out, size / 1024, elapsed)
    return config.out


# Measuring -----------------------------------------------------------------------------------


def style_cases(count: int = 12) -> tuple[BenchmarkCase, ...]:
    """Held-out benchmark prompts without black (a dark ring does not show on black)."""
    plain = [
        case
        for case in benchmark_cases()
        if case.scene.background != "black" and all(o.colour != "black" for o in case.scene.objects)
    ]
    return tuple(plain[:count])


def generate(pipe: Any, prompts: list[str], seed: int, **kwargs: Any) -> list[NDArray[np.uint8]]:
    """One 64 px picture per prompt at the model's defaults, seeded per call."""
    generator = torch.Generator().manual_seed(seed)
    images = pipe(
        prompts,
        num_inference_steps=20,
        guidance_scale=3.0,
        generator=generator,
        output_type="np",
        **kwargs,
    ).images
    return [(np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8) for image in images]


def adherence(case: BenchmarkCase, image: NDArray[np.uint8]) -> tuple[bool, bool]:
    """(every asked colour is drawn, every asked colour+shape is drawn), outline painted over."""
    seen = analyse(without_outline(image)).objects
    colours = {o.colour for o in seen}
    pairs = {(o.colour, o.shape) for o in seen}
    wanted = case.scene.objects
    return (
        all(o.colour in colours for o in wanted),
        all((o.colour, o.shape) in pairs for o in wanted),
    )


@dataclass(frozen=True)
class StyleRow:
    weight: float
    outline: float
    darkness: float
    colour: float
    shape: float


def measure(
    pipe: Any, adapter: str, weights: Sequence[float], seeds: Sequence[int]
) -> list[StyleRow]:
    """Outline score and adherence at each weight, over `style_cases()` × `seeds`."""
    cases = style_cases()
    prompts = [case.prompt for case in cases]
    rows = []
    for weight in weights:
        pipe.set_adapters([adapter], [weight])
        scores, darkness, colour, shape = [], [], [], []
        for seed in seeds:
            for case, image in zip(cases, generate(pipe, prompts, seed), strict=True):
                scores.append(outline_score(image))
                darkness.append(ring_darkness(image))
                ok_colour, ok_shape = adherence(case, image)
                colour.append(ok_colour)
                shape.append(ok_shape)
        means = (float(np.mean(values)) for values in (scores, darkness, colour, shape))
        rows.append(StyleRow(weight, *means))
    return rows


def before_after(
    pipe: Any, adapter: str, out: Path, weights: Sequence[float] = (1.0, 1.5), count: int = 6
) -> None:
    """A picture: the base model's drawings on top, one row per weight below (2x upscale)."""
    prompts = [case.prompt for case in style_cases(count)]
    pipe.disable_lora()
    rows = [np.concatenate(generate(pipe, prompts, 0), axis=1)]
    pipe.enable_lora()
    for weight in weights:
        pipe.set_adapters([adapter], [weight])
        rows.append(np.concatenate(generate(pipe, prompts, 0), axis=1))
    picture = Image.fromarray(np.concatenate(rows, axis=0))
    picture.resize((picture.width * 2, picture.height * 2), Image.Resampling.NEAREST).save(out)


def run_measure(path: Path, picture: Path | None, seeds: int) -> None:
    pipe = load_pipeline(EMBEDDED_MODEL_DIR)
    pipe.load_lora_weights(str(path), adapter_name="outline")
    print("| weight | outline score | ring darkness | colour adherence | colour+shape adherence |")
    print("|---|---|---|---|---|")
    for row in measure(pipe, "outline", MEASURE_WEIGHTS, range(seeds)):
        print(
            f"| {row.weight:g} | {row.outline:.3f} | {row.darkness:.3f} "
            f"| {row.colour * 100:.1f} % | {row.shape * 100:.1f} % |"
        )
    if picture is not None:
        before_after(pipe, "outline", picture)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = LoraConfig(out=Path("."))
    parser = argparse.ArgumentParser(
        prog="python -m generation.embedded.lora", description=__doc__.split("\n\n")[0]
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", type=Path, help="LoRA file to train and write (.safetensors)")
    action.add_argument("--measure", type=Path, help="LoRA file to measure")
    parser.add_argument("--picture", type=Path, default=None, help="with --measure: PNG to draw")
    parser.add_argument("--seeds", type=int, default=4, help="with --measure: seeds per prompt")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--rank", type=int, default=defaults.rank)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--dataset-size", type=int, default=defaults.dataset_size)
    parser.add_argument("--timestep-max", type=int, default=defaults.timestep_max)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    if args.measure is not None:
        run_measure(args.measure, args.picture, args.seeds)
        return 0
    train(
        LoraConfig(
            out=args.out,
            steps=args.steps,
            rank=args.rank,
            seed=args.seed,
            batch=args.batch,
            lr=args.lr,
            dataset_size=args.dataset_size,
            timestep_max=args.timestep_max,
            threads=args.threads,
            log_every=args.log_every,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
