"""`sdbot bench gpu`'s figures: per shape, the raw diffusers call, the whole path for each
fast-path setting, and the share of the physical floor (FLOPs over the device's peak)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Dense fp16/bf16 tensor peak (no sparsity), TFLOPS, by a piece of the CUDA device's name; the
# first match wins, so the longer names come first ("L40S" before "L40" before "L4").
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("RTX 4090", 165.0),
    ("A10G", 70.0),
    ("V100", 125.0),
    ("T4", 65.0),
)


def flops_text(flops: float) -> str:
    """FLOPs with a unit that keeps three figures (a tiny model's are GFLOP)."""
    if flops >= 1e12:
        return f"{flops / 1e12:.3f} TFLOP"
    return f"{flops / 1e9:.3f} GFLOP"


def peak_tflops(device_name: str) -> float | None:
    """The table's peak for a device name (torch.cuda.get_device_name); None when unknown."""
    for piece, tflops in PEAK_TFLOPS:
        if piece in device_name:
            return tflops
    return None


@dataclass(frozen=True)
class RawFigures:
    """The pipeline's own call (warm, in this process), a batch of ``variants`` images."""

    call_ms: float  # median of the runs, one call
    ms_per_image: float
    batch_of_one_ms: float | None  # one image a call (None when variants is 1)
    peak_memory_gb: float | None  # torch.cuda.max_memory_allocated (None off CUDA)

    @property
    def batching_gain(self) -> float | None:
        """Images per second at a batch of ``variants`` over one image a call."""
        return None if self.batch_of_one_ms is None else self.batch_of_one_ms / self.ms_per_image


@dataclass(frozen=True)
class PathRow:
    """The whole sdbot path (moderation, audit, queue, worker, safety, watermark, files) under
    one fast-path setting, in a fresh worker."""

    fast_path: str
    first_call_s: float  # the worker's start, the model's load (and compile) and one job
    call_ms: float  # median of the runs: one job of ``variants`` images, end to end
    ms_per_image: float
    diffusion_ms_per_image: float  # the worker's own pipeline call
    images: int  # pictures the timed jobs delivered (after safety, watermark, files)
    verified: int  # of them, with their watermark read back
    files: int  # PNG files the path wrote, grids included


@dataclass(frozen=True)
class ShapeReport:
    shape: str
    family: str
    tiny: bool
    device: str
    dtype: str
    side: int
    steps: int
    variants: int
    guidance_scale: float
    runs: int
    parameters: dict[str, int]
    unet_pass_flops: int  # one UNet call for one image, guidance's two samples included
    vae_decode_flops: int  # one image
    peak_tflops: float | None
    build_s: float
    raw: RawFigures
    rows: tuple[PathRow, ...]

    def floor_ms_per_image(self) -> float | None:
        """The UNet's FLOPs for one image (every step) at the device's peak."""
        if not self.peak_tflops:
            return None
        return self.steps * self.unet_pass_flops / (self.peak_tflops * 1e12) * 1000

    def share_of_floor(self, ms_per_image: float) -> float | None:
        floor = self.floor_ms_per_image()
        return None if floor is None else floor / ms_per_image

    def its(self, call_ms: float) -> float:
        """UNet steps per second of one call of ``variants`` images (diffusers' it/s)."""
        return self.steps / (call_ms / 1000)

    def ratio(self, row: PathRow) -> float:
        return row.ms_per_image / self.raw.ms_per_image

    def best(self) -> PathRow:
        return min(self.rows, key=lambda row: row.ms_per_image)

    def compile_s(self, row: PathRow) -> float | None:
        """A compiling row's first call less the quickest first call of a row that does not
        compile: what compiling cost (None without such a row)."""
        if "compile" not in row.fast_path:
            return None
        plain = [r.first_call_s for r in self.rows if "compile" not in r.fast_path]
        return row.first_call_s - min(plain) if plain else None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["raw"]["batching_gain"] = self.raw.batching_gain
        out["raw"]["its"] = self.its(self.raw.call_ms)
        out["raw"]["share_of_floor"] = self.share_of_floor(self.raw.ms_per_image)
        out["floor_ms_per_image"] = self.floor_ms_per_image()
        out["best_fast_path"] = self.best().fast_path
        for row, row_dict in zip(self.rows, out["rows"], strict=True):
            row_dict["its"] = self.its(row.call_ms)
            row_dict["ratio"] = self.ratio(row)
            row_dict["share_of_floor"] = self.share_of_floor(row.ms_per_image)
            row_dict["compile_s"] = self.compile_s(row)
        return out

    def to_text(self) -> str:
        raw = self.raw
        floor = self.floor_ms_per_image()
        total = sum(self.parameters.values())
        lines = [
            f"{self.shape}{' (tiny)' if self.tiny else ''}: {self.family}-shaped, random "
            f"weights, {total / 1e6:.1f} M parameters (UNet {self.parameters['unet'] / 1e6:.1f} M)"
            f" · {self.device} {self.dtype} · {self.side}² px · {self.steps} steps · cfg "
            f"{self.guidance_scale:g} · {self.variants} images a call · median of {self.runs}",
            f"  UNet pass with guidance {flops_text(self.unet_pass_flops)} an image "
            f"(× {self.steps} steps = {flops_text(self.steps * self.unet_pass_flops)}); "
            f"VAE decode {flops_text(self.vae_decode_flops)}",
            "  floor (UNet FLOPs at the peak): "
            + (
                f"{floor:.1f} ms an image at {self.peak_tflops:g} TFLOPS"
                if floor is not None
                else "none (unknown device; give --peak-tflops)"
            ),
            f"  built and saved in {self.build_s:.1f} s",
            "",
            f"  {'':<28}{'it/s':>8}{'ms/image':>11}{'ratio':>8}{'floor':>8}{'first call':>12}",
            self._line("raw diffusers call", self.its(raw.call_ms), raw.ms_per_image, None, None),
        ]
        best = self.best()
        for row in self.rows:
            name = f"path {row.fast_path or '(no switches)'}"
            mark = " ◀ best" if row is best and len(self.rows) > 1 else ""
            compile_s = self.compile_s(row)
            if compile_s is not None:
                mark += f" (compile ≈ {compile_s:.1f} s)"
            lines.append(
                self._line(name, self.its(row.call_ms), row.ms_per_image, row, row.first_call_s)
                + mark
            )
        lines.append("")
        if raw.batching_gain is not None:
            lines.append(
                f"  batching (raw calls): {self.variants} images in one call "
                f"{raw.ms_per_image:.1f} ms an image, one a call {raw.batch_of_one_ms:.1f} ms: "
                f"×{raw.batching_gain:.2f}"
            )
        if raw.peak_memory_gb is not None:
            lines.append(f"  raw call's peak device memory {raw.peak_memory_gb:.2f} GB")
        for row in self.rows:
            lines.append(
                f"  path {row.fast_path or '(no switches)'}: {row.images} images delivered, "
                f"{row.verified} watermark-verified, {row.files} files; the worker's diffusion "
                f"{row.diffusion_ms_per_image:.1f} ms an image"
            )
        return "\n".join(lines)

    def _line(
        self, name: str, its: float, ms: float, row: PathRow | None, first_s: float | None
    ) -> str:
        share = self.share_of_floor(ms)
        ratio = "" if row is None else f"{self.ratio(row):.3f}"
        return (
            f"  {name:<28}{its:8.2f}{ms:11.1f}{ratio:>8}"
            f"{'' if share is None else f'{share:.1%}':>8}"
            f"{'' if first_s is None else f'{first_s:.1f} s':>12}"
        )
