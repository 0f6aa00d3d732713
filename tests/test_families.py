"""Model families: detection from folders and single files, loading both (a single file with
its config folder), the shipped config folders, and img2img for each family.

SD 1.x is the embedded model; SD 2.x and SDXL are the tiny pipelines of tests/tiny_families.py.
Each is saved as a diffusers folder and as one LDM checkpoint (generation.single_file).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from generation.errors import ModelLoadError
from generation.families import (
    Family,
    family_of_checkpoint,
    family_of_folder,
    safetensors_header,
)
from generation.loading import load_pipeline, shipped_config
from generation.models import EMBEDDED_MODEL_DIR, resolve_model
from tests.tiny_families import SIDE, build_saved

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers, numpy 2

FAMILIES = (Family.SD1, Family.SD2, Family.SDXL)
SIDES = {Family.SD1: 64, Family.SD2: SIDE, Family.SDXL: SIDE}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[Family, tuple[Path, Path]]:
    """Each family's model as (folder, single file)."""
    root = tmp_path_factory.mktemp("families")
    return {family: build_saved(family, root) for family in FAMILIES}


def _draw(pipe: Any, side: int) -> np.ndarray:
    images = pipe(
        "a red circle",
        num_inference_steps=2,
        width=side,
        height=side,
        generator=torch.Generator().manual_seed(1),
        output_type="np",
    ).images
    return np.asarray(images[0])


def _weights(pipe: Any) -> dict[str, torch.Tensor]:
    names = ("unet", "vae", "text_encoder", "text_encoder_2")
    return {
        f"{name}.{key}": value
        for name in names
        if getattr(pipe, name, None) is not None
        for key, value in getattr(pipe, name).state_dict().items()
    }


# --- detection -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_family_of_a_folder_and_of_its_single_file(
    family: Family, saved: dict[Family, tuple[Path, Path]]
) -> None:
    folder, single = saved[family]
    assert family_of_folder(folder) is family
    assert family_of_checkpoint(single) is family


@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_config_folders_are_their_family(family: Family) -> None:
    assert family_of_folder(shipped_config(family)) is family


def test_the_embedded_model_is_sd1_by_layout() -> None:
    """128 wide (no published width), one CLIP encoder with quick-GELU, convolutional
    projections: SD 1.x's layout, although it predicts v like SD 2.x."""
    assert family_of_folder(EMBEDDED_MODEL_DIR) is Family.SD1


def test_a_folder_that_is_not_stable_diffusion_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelLoadError, match="FluxPipeline folder without a UNet"):
        family_of_folder(tmp_path)


def test_header_is_read_without_the_tensors(saved: dict[Family, tuple[Path, Path]]) -> None:
    header = safetensors_header(saved[Family.SDXL][1])
    assert header["__metadata__"] == {"format": "pt", "sdbot.family": "sdxl"}
    embedding = header["conditioner.embedders.1.model.positional_embedding"]
    assert embedding["dtype"] == "F32"
    assert embedding["shape"] == [32, 64]


def _header_file(path: Path, header: bytes, data: bytes = b"", length: int | None = None) -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header + data)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"abc", "shorter than 8 bytes"),
        (struct.pack("<Q", 10**9) + b"{}", "header claims 1000000000 bytes"),
        (struct.pack("<Q", 2**62) + b"{}", "is not a safetensors file"),
        (struct.pack("<Q", 5) + b"{nope", "corrupt safetensors header"),
        (struct.pack("<Q", 2) + b"[]", "not a tensor table"),
        (struct.pack("<Q", 4) + b"\xff\xfe{}", "corrupt safetensors header"),
    ],
)
def test_corrupt_headers_are_model_load_errors(
    content: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as caught:
        family_of_checkpoint(path)
    assert str(path) in str(caught.value)


def test_a_file_cut_short_is_refused(
    saved: dict[Family, tuple[Path, Path]], tmp_path: Path
) -> None:
    whole = saved[Family.SD2][1].read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ModelLoadError, match=f"{cut} is cut short"):
        safetensors_header(cut)
    with pytest.raises(ModelLoadError, match=f"could not load model '{cut}': .*cut short"):
        load_pipeline(resolve_model(str(cut)), "cpu", torch.float32)


def test_unknown_layouts_are_refused(tmp_path: Path) -> None:
    component = EMBEDDED_MODEL_DIR / "unet" / "diffusion_pytorch_model.safetensors"
    with pytest.raises(
        ModelLoadError, match=r"not a Stable Diffusion checkpoint: no model\.diffusion"
    ):
        family_of_checkpoint(component)
    header = json.dumps(
        {"model.diffusion_model.out.2.bias": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    ).encode()
    unet_only = _header_file(tmp_path / "unet_only.safetensors", header, b"\0" * 4)
    with pytest.raises(ModelLoadError, match=f"{unet_only} has a UNet but no text encoder"):
        family_of_checkpoint(unet_only)


def test_pickle_checkpoints_are_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 a zip of pickles")
    with pytest.raises(ModelLoadError, match=r"only \.safetensors checkpoints are loaded"):
        family_of_checkpoint(ckpt)
    with pytest.raises(ModelLoadError, match=f"could not load model '{ckpt}': .*pickle"):
        load_pipeline(resolve_model(str(ckpt)), "cpu", torch.float32)


# --- loading -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_folder_and_single_file_load_the_same_model(
    family: Family, saved: dict[Family, tuple[Path, Path]]
) -> None:
    folder, single = saved[family]
    from_folder = load_pipeline(resolve_model(str(folder)), "cpu", torch.float32)
    from_file = load_pipeline(resolve_model(str(single)), "cpu", torch.float32, config=folder)
    expected = "StableDiffusionXLPipeline" if family is Family.SDXL else "StableDiffusionPipeline"
    assert type(from_folder).__name__ == type(from_file).__name__ == expected
    folder_weights, file_weights = _weights(from_folder), _weights(from_file)
    assert folder_weights.keys() == file_weights.keys()
    assert all(torch.equal(folder_weights[k], file_weights[k]) for k in folder_weights)
    # Same weights, scheduler and tokenizer: the same pictures (one drawn to show it works).
    assert dict(from_file.scheduler.config) == dict(from_folder.scheduler.config)
    prompt = "a red circle"
    assert from_file.tokenizer(prompt).input_ids == from_folder.tokenizer(prompt).input_ids
    side = SIDES[family]
    image = _draw(from_file, side)
    assert image.shape == (side, side, 3)
    assert image.std() > 0  # not a blank image


@pytest.mark.parametrize("family", FAMILIES)
def test_img2img_from_pipe_works_for_each_family(
    family: Family, saved: dict[Family, tuple[Path, Path]]
) -> None:
    """The upscale path: AutoPipelineForImage2Image.from_pipe on the loaded pipeline."""
    from diffusers import AutoPipelineForImage2Image

    folder, single = saved[family]
    pipe = load_pipeline(resolve_model(str(single)), "cpu", torch.float32, config=folder)
    img2img = AutoPipelineForImage2Image.from_pipe(pipe)
    side = SIDES[family]
    start = torch.rand(1, 3, side * 2, side * 2)
    out = img2img(
        "a red circle",
        image=start,
        strength=0.5,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(1),
        output_type="np",
    ).images
    assert np.asarray(out[0]).shape == (side * 2, side * 2, 3)
    assert img2img.unet is pipe.unet  # shares the loaded weights


def test_a_config_folder_of_another_family_is_refused(
    saved: dict[Family, tuple[Path, Path]],
) -> None:
    single = saved[Family.SD2][1]
    with pytest.raises(ModelLoadError, match=r"checkpoint is sd2 but config folder .* is sd1"):
        load_pipeline(resolve_model(str(single)), "cpu", torch.float32, config=EMBEDDED_MODEL_DIR)
    with pytest.raises(ModelLoadError, match="declared sdxl but its tensors are sd2's"):
        load_pipeline(resolve_model(str(single)), "cpu", torch.float32, family=Family.SDXL)


def test_a_config_that_does_not_fit_the_weights_is_refused(
    saved: dict[Family, tuple[Path, Path]],
) -> None:
    """A tiny SD 2.x file with the shipped (full-size) SD 2.1 config: the shapes differ."""
    single = saved[Family.SD2][1]
    with pytest.raises(ModelLoadError, match=f"could not load model '{single}'"):
        load_pipeline(resolve_model(str(single)), "cpu", torch.float32)


def test_a_catalog_entry_loads_with_its_config(
    saved: dict[Family, tuple[Path, Path]], tmp_path: Path
) -> None:
    """The picker's path: a models file names a single file and its config folder."""
    from generation.catalog import load_catalog

    folder, single = saved[Family.SDXL]
    models = tmp_path / "models.toml"
    models.write_text(
        f'[[model]]\nname = "tiny-xl"\nsource = "{single}"\nconfig = "{folder}"\n'
        f'sizes = ["1:1={SIDE}x{SIDE}"]\n'
    )
    entry = load_catalog("", models_file=models).model("tiny-xl")
    assert entry.family is Family.SDXL
    pipe = load_pipeline(entry, "cpu", torch.float32)
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert _draw(pipe, SIDE).shape == (SIDE, SIDE, 3)


# --- shipped configs at full size (meta tensors: shapes only, no memory) --------------------


def _full_size(family: Family) -> SimpleNamespace:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = shipped_config(family)
    parts: dict[str, Any] = {}
    with torch.device("meta"):
        parts["unet"] = UNet2DConditionModel.from_config(
            UNet2DConditionModel.load_config(str(folder / "unet"))
        )
        parts["vae"] = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
        parts["text_encoder"] = CLIPTextModel(
            CLIPTextConfig.from_pretrained(str(folder / "text_encoder"))
        )
        if family is Family.SDXL:
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(str(folder / "text_encoder_2"))
            )
    return SimpleNamespace(**parts)


_PUBLISHED_UNET_PARAMETERS = {
    Family.SD1: 859_520_964,
    Family.SD2: 865_910_724,
    Family.SDXL: 2_567_463_684,
}


@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_configs_survive_the_ldm_names_at_full_size(family: Family) -> None:
    """Every tensor of a model built from the shipped config gets an LDM name that diffusers
    reads back to the same name and shape, and diffusers takes the names for the family's."""
    import diffusers.loaders.single_file_utils as sfu

    from generation.single_file import checkpoint_tensors

    pipe = _full_size(family)
    assert sum(p.numel() for p in pipe.unet.parameters()) == _PUBLISHED_UNET_PARAMETERS[family]
    ldm = checkpoint_tensors(pipe, family)
    assert (
        sfu.infer_diffusers_model_type(ldm)
        == {
            Family.SD1: "v1",
            Family.SD2: "v2",
            Family.SDXL: "xl_base",
        }[family]
    )

    def same(converted: dict[str, torch.Tensor], model: Any) -> None:
        expected = {k: v.shape for k, v in model.state_dict().items() if "position_ids" not in k}
        assert {k: v.shape for k, v in converted.items()} == expected

    same(sfu.convert_ldm_unet_checkpoint(ldm, pipe.unet.config), pipe.unet)
    same(sfu.convert_ldm_vae_checkpoint(ldm, pipe.vae.config), pipe.vae)
    if family is Family.SD2:
        text = sfu.convert_open_clip_checkpoint(pipe.text_encoder, ldm)
    else:
        text = sfu.convert_ldm_clip_checkpoint(ldm)
    same({k.removeprefix("text_model."): v for k, v in text.items()}, pipe.text_encoder)
    if family is Family.SDXL:
        prefix = "conditioner.embedders.1.model."
        same(
            sfu.convert_open_clip_checkpoint(pipe.text_encoder_2, ldm, prefix), pipe.text_encoder_2
        )


@pytest.mark.parametrize(
    "tokenizer", ["sd1/tokenizer", "sd2/tokenizer", "sdxl/tokenizer", "sdxl/tokenizer_2"]
)
def test_shipped_tokenizers_are_clips(tokenizer: str) -> None:
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(shipped_config(Family.SD1).parent / tokenizer))
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tok) == 49408
    assert tok.model_max_length == 77
