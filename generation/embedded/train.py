"""Train the embedded tiny text-to-image model and write it as a Stable Diffusion folder.

    python -m generation.embedded.train --out DIR [--seed N] [--vae-steps N] [--unet-steps N]
                                        [--device cpu|cuda] ...

Steps: render a data set of captioned scenes, train a BPE tokenizer on its captions, train the
VAE, encode the data set to latents, train the UNet together with the text encoder (v-prediction,
zero terminal SNR, classifier-free-guidance dropout, EMA), then save the folder. The default step
counts fit a 2-core CPU in under an hour; on CPU a seed gives the same weights every run.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel

from generation.embedded.components import (
    MAX_TOKENS,
    UNetShape,
    build_inference_scheduler,
    build_text_encoder,
    build_training_scheduler,
    build_unet,
    build_vae,
    torch_threads,
)
from generation.embedded.dataset import SceneDataset, build_dataset, tokenize_captions
from generation.embedded.folder import save_model_folder
from generation.embedded.progress import Progress, format_duration
from generation.embedded.scenes import caption_vocabulary
from generation.embedded.tokenizer import save_tokenizer
from generation.options import ModelDefaults

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    dataset_size: int = 16_000
    captions_per_scene: int = 3
    vae_steps: int = 1_000  # ~0.6 s a step at batch 32 on 2 CPU cores
    vae_batch: int = 32
    vae_lr: float = 2e-3
    unet_steps: int = 2_500  # ~0.87 s a step at batch 64 on 2 CPU cores
    unet_batch: int = 64
    unet_lr: float = 1e-3
    text_lr: float = 5e-4
    cfg_dropout: float = 0.1
    ema_decay: float = 0.999
    warmup_steps: int = 100
    unet_shape: UNetShape = field(default_factory=UNetShape)
    init_vae: Path | None = None
    half: bool = True
    guidance_scale: float = 3.0  # best count share in a 2 / 3 / 5 sweep at 20 steps
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        for name in ("dataset_size", "vae_batch", "unet_batch", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("vae_steps", "unet_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.cfg_dropout < 1.0:
            raise ValueError(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


class Ema:
    """Exponential moving average of parameters, with the usual warm-up of the decay."""

    def __init__(self, params: Iterable[torch.nn.Parameter], decay: float) -> None:
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for param, shadow in zip(self.params, self.shadow, strict=True):
            param.copy_(shadow)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine down to 10 %."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def train_vae(
    vae: AutoencoderKL, images: torch.Tensor, config: TrainConfig, generator: torch.Generator
) -> None:
    """Reconstruction (MSE + L1) with a very light KL term."""
    vae.train()
    optimiser = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    progress = Progress("vae", config.vae_steps, config.log_every)
    for step in range(config.vae_steps):
        for group in optimiser.param_groups:
            group["lr"] = config.vae_lr * _lr_factor(step, config.vae_steps, config.warmup_steps)
        index = torch.randint(
            len(images), (config.vae_batch,), generator=generator, device=images.device
        )
        batch = _to_unit(images[index])
        posterior = vae.encode(batch).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator, device=images.device)
        latents = posterior.mean + posterior.std * noise
        recon = vae.decode(latents).sample
        kl = posterior.kl().mean() / batch[0].numel()
        loss = F.mse_loss(recon, batch) + 0.5 * F.l1_loss(recon, batch) + 1e-4 * kl
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimiser.step()
        progress.update(step + 1, loss.item())
    vae.eval()


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Posterior means of the whole data set (unscaled)."""
    chunks = [
        vae.encode(_to_unit(images[i : i + batch])).latent_dist.mean
        for i in range(0, len(images), batch)
    ]
    return torch.cat(chunks)


@torch.no_grad()
def reconstruction_psnr(vae: AutoencoderKL, images: torch.Tensor) -> float:
    batch = _to_unit(images[:256])
    recon = vae.decode(vae.encode(batch).latent_dist.mean).sample.clamp(-1, 1)
    mse = F.mse_loss((recon + 1) / 2, (batch + 1) / 2).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def train_unet(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    latents: torch.Tensor,
    token_ids: torch.Tensor,
    uncond_ids: torch.Tensor,
    scheduler: DDPMScheduler,
    config: TrainConfig,
    generator: torch.Generator,
) -> None:
    """v-prediction loss; captions dropped to the empty prompt for classifier-free guidance."""
    device = latents.device
    unet.train()
    text_encoder.train()
    optimiser = torch.optim.AdamW(
        [
            {"params": list(unet.parameters()), "lr": config.unet_lr, "base": config.unet_lr},
            {
                "params": list(text_encoder.parameters()),
                "lr": config.text_lr,
                "base": config.text_lr,
            },
        ],
        weight_decay=0.01,
    )
    ema = Ema([*unet.parameters(), *text_encoder.parameters()], config.ema_decay)
    timesteps_total = scheduler.config.num_train_timesteps
    progress = Progress("unet", config.unet_steps, config.log_every)
    n, k = token_ids.shape[:2]
    for step in range(config.unet_steps):
        factor = _lr_factor(step, config.unet_steps, config.warmup_steps)
        for group in optimiser.param_groups:
            group["lr"] = group["base"] * factor
        # 1. A batch: latents, one of each scene's captions, some captions dropped.
        index = torch.randint(n, (config.unet_batch,), generator=generator, device=device)
        which = torch.randint(k, (config.unet_batch,), generator=generator, device=device)
        ids = token_ids[index, which]
        dropped = torch.rand(config.unet_batch, generator=generator, device=device)
        ids = torch.where((dropped < config.cfg_dropout)[:, None], uncond_ids[None, :], ids)
        clean = latents[index]
        # 2. Noise it at random timesteps and predict v.
        noise = torch.randn(clean.shape, generator=generator, device=device)
        t = torch.randint(timesteps_total, (config.unet_batch,), generator=generator, device=device)
        noisy = scheduler.add_noise(clean, noise, t)
        target = scheduler.get_velocity(clean, noise, t)
        hidden = text_encoder(ids).last_hidden_state
        prediction = unet(noisy, t, hidden).sample
        loss = F.mse_loss(prediction, target)
        # 3. Step and average.
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        torch.nn.utils.clip_grad_norm_([*unet.parameters(), *text_encoder.parameters()], 1.0)
        optimiser.step()
        ema.update()
        progress.update(step + 1, loss.item())
    ema.copy_to_model()
    unet.eval()
    text_encoder.eval()


def train(config: TrainConfig) -> Path:
    """Run the whole recipe; returns the written model folder."""
    with torch_threads(config.threads):
        return _train(config)


def _train(config: TrainConfig) -> Path:
    started = time.perf_counter()
    device = torch.device(config.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)

    # 1. Data: rendered scenes, several captions each.
    data: SceneDataset = build_dataset(config.dataset_size, config.captions_per_scene, config.seed)
    images = data.images.to(device)

    # 2. Tokenizer: a BPE trained on the captions (and every caption word).
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = Path(scratch) / "tokenizer"
        texts = [c for caps in data.captions[:4000] for c in caps] + caption_vocabulary()
        tokenizer = save_tokenizer(tokenizer_dir, texts, MAX_TOKENS)
        flat = [c for caps in data.captions for c in caps]
        token_ids = tokenize_captions(tokenizer, flat).view(len(data.captions), -1, MAX_TOKENS)
        uncond_ids = tokenize_captions(tokenizer, [""])[0]

        # 3. VAE (or a trained one reused), latents and their scaling factor.
        if config.init_vae is not None:
            vae = AutoencoderKL.from_pretrained(
                str(config.init_vae), subfolder="vae", dtype=torch.float32
            )
            vae = vae.to(device)
            log.info("vae ◆ reused from %s", config.init_vae)
        else:
            vae = build_vae().to(device)
            train_vae(vae, images, config, generator)
        vae.eval()
        log.info("vae ◆ reconstruction PSNR %.2f dB", reconstruction_psnr(vae, images))
        raw_latents = encode_latents(vae, images)
        scaling = 1.0 / raw_latents.std().item()
        vae.register_to_config(scaling_factor=scaling)
        latents = raw_latents * scaling
        log.info("vae ◆ scaling factor %.4f", scaling)
        del images

        # 4. UNet and text encoder together.
        text_encoder = build_text_encoder(
            len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id
        ).to(device)
        unet = build_unet(config.unet_shape).to(device)
        scheduler = build_training_scheduler()
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.to(device)
        train_unet(
            unet,
            text_encoder,
            latents,
            token_ids.to(device),
            uncond_ids.to(device),
            scheduler,
            config,
            generator,
        )

        # 5. The folder, with DPM++ as its scheduler and the measured defaults.
        save_model_folder(
            config.out,
            vae=vae.to("cpu"),
            text_encoder=text_encoder.to("cpu"),
            tokenizer=tokenizer,
            tokenizer_source=tokenizer_dir,
            unet=unet.to("cpu"),
            scheduler=build_inference_scheduler(build_training_scheduler()),
            half=config.half,
            defaults=ModelDefaults(
                steps=20,
                guidance_scale=config.guidance_scale,
                width=64,
                height=64,
                scheduler="dpmpp",
            ),
        )
    log.info("done ◆ %s ◆ total %s", config.out, format_duration(time.perf_counter() - started))
    return config.out


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    defaults = TrainConfig(out=Path("."))
    parser = argparse.ArgumentParser(
        prog="python -m generation.embedded.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=defaults.device)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--dataset-size", type=int, default=defaults.dataset_size)
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--vae-batch", type=int, default=defaults.vae_batch)
    parser.add_argument("--unet-steps", type=int, default=defaults.unet_steps)
    parser.add_argument("--unet-batch", type=int, default=defaults.unet_batch)
    parser.add_argument("--unet-lr", type=float, default=defaults.unet_lr)
    parser.add_argument("--text-lr", type=float, default=defaults.text_lr)
    parser.add_argument("--ema-decay", type=float, default=defaults.ema_decay)
    parser.add_argument("--cfg-dropout", type=float, default=defaults.cfg_dropout)
    parser.add_argument(
        "--init-vae",
        type=Path,
        default=None,
        help="reuse the vae/ of an earlier model folder instead of training one",
    )
    parser.add_argument("--fp32", action="store_true", help="save float32 weights (default fp16)")
    parser.add_argument(
        "--guidance-scale",
        type=float,
        default=defaults.guidance_scale,
        help="recommended guidance scale written to sdbot.json",
    )
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    args = parser.parse_args(argv)
    return TrainConfig(
        out=args.out,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        dataset_size=args.dataset_size,
        vae_steps=args.vae_steps,
        vae_batch=args.vae_batch,
        unet_steps=args.unet_steps,
        unet_batch=args.unet_batch,
        unet_lr=args.unet_lr,
        text_lr=args.text_lr,
        ema_decay=args.ema_decay,
        cfg_dropout=args.cfg_dropout,
        init_vae=args.init_vae,
        half=not args.fp32,
        guidance_scale=args.guidance_scale,
        log_every=args.log_every,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
