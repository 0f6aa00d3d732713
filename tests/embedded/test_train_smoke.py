from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from generation.embedded.folder import read_defaults
from generation.embedded.train import TrainConfig, parse_args, train

from .conftest import DPM_NUMPY_WARNING, smoke_config


def test_smoke_training_writes_a_stable_diffusion_folder(smoke_model: Path) -> None:
    index = json.loads((smoke_model / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["scheduler"] == ["diffusers", "DPMSolverMultistepScheduler"]
    for name in ("vocab.json", "merges.txt"):
        assert (smoke_model / "tokenizer" / name).is_file()
    vae_config = json.loads((smoke_model / "vae" / "config.json").read_text(encoding="utf-8"))
    assert vae_config["scaling_factor"] != pytest.approx(0.18215)  # measured, not SD's default
    scheduler = json.loads(
        (smoke_model / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8")
    )
    assert scheduler["prediction_type"] == "v_prediction"
    assert scheduler["rescale_betas_zero_snr"] is True
    assert scheduler["timestep_spacing"] == "trailing"
    defaults = read_defaults(smoke_model)
    assert (defaults.steps, defaults.scheduler, defaults.width, defaults.height) == (
        20,
        "dpmpp",
        64,
        64,
    )


@pytest.mark.filterwarnings(DPM_NUMPY_WARNING)
def test_smoke_model_loads_with_plain_from_pretrained_and_draws(
    smoke_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = StableDiffusionPipeline.from_pretrained(str(smoke_model), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    output = pipe(
        "a red circle on a blue background",
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    image = output.images[0]
    assert image.shape == (64, 64, 3)
    assert np.isfinite(image).all()


def test_training_is_deterministic_on_cpu(smoke_model: Path, tmp_path: Path) -> None:
    again = train(smoke_config(tmp_path / "again"))
    other = train(smoke_config(tmp_path / "other", seed=1))
    name = "unet/diffusion_pytorch_model.safetensors"
    first, second, third = (load_file(str(d / name)) for d in (smoke_model, again, other))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], third[k]) for k in first)


def test_command_line_options_reach_the_config() -> None:
    config = parse_args(
        ["--out", "x", "--seed", "3", "--vae-steps", "7", "--unet-steps", "9", "--device", "cpu"]
    )
    assert (config.out, config.seed, config.vae_steps, config.unet_steps) == (Path("x"), 3, 7, 9)
    assert config.device == "cpu"


def test_bad_config_names_the_value() -> None:
    with pytest.raises(ValueError, match="'tpu'"):
        TrainConfig(out=Path("x"), device="tpu")
    with pytest.raises(ValueError, match="unet_steps must be >= 0, got -1"):
        TrainConfig(out=Path("x"), unet_steps=-1)
