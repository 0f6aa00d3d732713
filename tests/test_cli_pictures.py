"""Pictures in on the command line, as a user runs it: real processes, one SQLite file, the
embedded model. One grid is drawn first; img2img, the edit, the vary, upscale and zoom controls,
/describe and the ControlNet start from it. Each `sdbot` that draws starts its own worker (the
slow part), so each drawing command runs once."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bot.settings import Settings
from generation.describe import describe_embedded
from generation.models import EMBEDDED_MODEL_DIR
from tests.test_cli import sdbot
from tests.test_describe import CAPTION_WORDS, models_file, tiny_blip

PROMPT = "a large red circle in the centre on a blue background"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Any]]:
    """A migrated database and the first grid (seed 3: a red circle on blue, read back as one)."""
    root = tmp_path_factory.mktemp("pictures")
    settings = Settings(
        _env_file=None,
        model=str(EMBEDDED_MODEL_DIR),
        data_dir=root / "data",
        database_url=f"sqlite+aiosqlite:///{root / 'sdbot.db'}",
        device="cpu",
    )
    upgraded = sdbot(settings, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    return settings, run_json(settings, "imagine", PROMPT, "--seed", "3")


def run_json(settings: Settings, *args: str, **env: str) -> dict[str, Any]:
    result = sdbot(settings, *args, "--json", **env)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """A bad input's one line on stderr, exit 2."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def rgb(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def job_count(settings: Settings) -> int:
    exported = sdbot(settings, "audit", "export")
    assert exported.returncode == 0, exported.stderr
    return len(exported.stdout.splitlines())


def test_img2img_from_a_file_keeps_the_picture_and_its_trace(
    world: tuple[Settings, dict[str, Any]],
) -> None:
    settings, first = world
    source = first["images"][0]["path"]
    drawn = run_json(
        settings, "imagine", "a green square on a blue background",
        "--image", source, "--strength", "0.35", "--seed", "5", "--variants", "1",
    )  # fmt: skip
    assert drawn["status"] == "succeeded"
    assert (drawn["kind"], drawn["start"], drawn["strength"]) == ("imagine", "image", 0.35)
    [given] = drawn["inputs"]
    assert (given["role"], given["sha256"]) == ("image", sha256(source))
    assert given["parent_job_id"] == first["job_id"]  # its watermark names the job that made it
    assert given["nsfw_score"] is not None
    # The prompt names no place: the redraw keeps the picture's, and its background.
    after = rgb(drawn["images"][0]["path"])
    said = describe_embedded(after.astype(np.uint8))
    assert "a green square in the centre on a blue background" in said, said
    assert np.abs(after[:16] - rgb(source)[:16]).mean() < 10
    traced = sdbot(settings, "trace", drawn["images"][0]["path"])
    assert traced.returncode == 0, traced.stderr
    assert "start     image · strength 0.35" in traced.stdout
    assert f"input     image sha256 {sha256(source)} PNG 256x256" in traced.stdout
    assert f"made by job {first['job_id']}" in traced.stdout


def test_edit_redraws_only_the_white_of_the_mask(
    world: tuple[Settings, dict[str, Any]], tmp_path: Path
) -> None:
    settings, first = world
    source = first["images"][0]["path"]
    mask = np.zeros((256, 256), dtype=np.uint8)
    mask[:, 128:] = 255  # the right half is redrawn
    Image.fromarray(mask).save(tmp_path / "mask.png")
    edited = run_json(
        settings, "edit", source, "--mask", str(tmp_path / "mask.png"),
        "a large yellow square in the centre on a blue background", "--seed", "2",
        "--variants", "1",
    )  # fmt: skip
    assert edited["status"] == "succeeded"
    assert (edited["kind"], edited["start"], edited["strength"]) == ("edit", "inpaint", 1.0)
    assert [i["role"] for i in edited["inputs"]] == ["image", "mask"]
    assert edited["inputs"][1]["sha256"] == sha256(tmp_path / "mask.png")
    before, after = rgb(source), rgb(edited["images"][0]["path"])
    kept = np.abs(after[:, :112] - before[:, :112]).mean()
    redrawn = np.abs(after[:, 144:] - before[:, 144:]).mean()
    assert kept < 10, kept
    assert redrawn > 2 * kept, (kept, redrawn)

    too_small = tmp_path / "small.png"
    Image.fromarray(mask[:100]).save(too_small)
    line = refused(sdbot(settings, "edit", source, "x", "--mask", str(too_small)))
    assert "mask" in line
    assert "256x256" in line.replace(" × ", "x").replace("×", "x"), line


def test_describe_reads_an_embedded_picture(
    world: tuple[Settings, dict[str, Any]], tmp_path: Path
) -> None:
    settings, first = world
    source = first["images"][0]["path"]
    described = run_json(settings, "describe", source)
    assert described["error"] is None
    assert described["prompts"][0] == PROMPT
    assert described["prompts"][-1] == "a red circle on a blue background"
    assert described["sha256"] == sha256(source)
    assert described["parent_job_id"] == first["job_id"]
    human = sdbot(settings, "describe", source)
    assert human.returncode == 0, human.stderr
    assert f"1. {PROMPT}" in human.stdout
    assert f"made by   job {first['job_id']}" in human.stdout
    line = refused(sdbot(settings, "describe", source, "--model", "sd99"))
    assert line == "sdbot: error: model must be one of embedded, got 'sd99'"

    plain = tmp_path / "plain.png"
    Image.new("RGB", (64, 64), (245, 220, 40)).save(plain)
    nothing = sdbot(settings, "describe", str(plain))
    assert nothing.returncode == 1, nothing.stderr
    assert "failed: no shape found: the picture reads as a plain yellow" in nothing.stdout


def test_vary_upscale_and_zoom_by_job_id(world: tuple[Settings, dict[str, Any]]) -> None:
    settings, first = world
    job = str(first["job_id"])
    varied = run_json(settings, "vary", job, "1")
    assert varied["status"] == "succeeded"
    assert len(varied["images"]) == 4
    assert (varied["kind"], varied["parent_job_id"], varied["parent_variant"]) == (
        "vary",
        int(job),
        1,
    )
    assert (varied["start"], varied["strength"]) == ("image", 0.35)
    assert varied["source_seed"] == first["seeds"][0]
    line = refused(sdbot(settings, "vary", job, "1"))
    assert line.startswith(f"sdbot: error: vary-1 of job {job} was used already: job ")

    # The guild's vary setting, from the command line: strong redraws 0.7 of the picture.
    changed = sdbot(settings, "guild", "set", "5", "--vary", "strong")
    assert changed.returncode == 0, changed.stderr
    assert "vary            strong" in sdbot(settings, "guild", "show", "5").stdout
    strong = run_json(settings, "vary", job, "2", "--guild", "5")
    assert (strong["strength"], strong["source_seed"]) == (0.7, first["seeds"][1])
    asked = run_json(settings, "vary", job, "3", "--strong")  # the member's choice, no guild's
    assert (asked["strength"], asked["source_seed"]) == (0.7, first["seeds"][2])

    upscaled = run_json(settings, "upscale", job, "2")
    assert (upscaled["kind"], upscaled["parent_variant"]) == ("upscale", 2)
    zoomed = run_json(settings, "zoom", str(upscaled["job_id"]))
    assert zoomed["status"] == "succeeded"
    assert len(zoomed["images"]) == 4
    assert (zoomed["kind"], zoomed["parent_job_id"]) == ("zoom", upscaled["job_id"])
    assert zoomed["start"] == "outpaint"
    traced = sdbot(settings, "trace", zoomed["images"][0]["path"])
    assert f"parent    job {upscaled['job_id']}" in traced.stdout
    assert "start     outpaint" in traced.stdout

    line = refused(sdbot(settings, "zoom", job))
    assert "zoom out works on an upscaled picture" in line
    line = refused(sdbot(settings, "vary", job, "5"))
    assert line == (
        "sdbot vary: error: argument variant: a variant must be a whole number from 1 to 4, "
        "got '5' (see sdbot vary --help)"
    )
    assert sdbot(settings, "upscale", "999999", "1").returncode == 4


def test_bad_files_are_refused_before_any_record(
    world: tuple[Settings, dict[str, Any]], tmp_path: Path
) -> None:
    settings, first = world
    before = job_count(settings)
    gif = tmp_path / "circle.gif"
    Image.open(first["images"][0]["path"]).save(gif, format="GIF")
    line = refused(sdbot(settings, "imagine", PROMPT, "--image", str(gif)))
    assert "image" in line
    assert "GIF" in line
    line = refused(sdbot(settings, "describe", str(gif)))
    assert "GIF" in line
    line = refused(sdbot(settings, "imagine", PROMPT, "--image", str(tmp_path / "none.png")))
    assert line == (
        f"sdbot: error: image must be a picture file, got '{tmp_path / 'none.png'}': no such file"
    )
    line = refused(sdbot(settings, "edit", str(gif), "x", "--mask", str(tmp_path / "no.png")))
    assert "no.png" in line
    line = refused(sdbot(settings, "imagine", PROMPT, "--control", f"sobel:{gif}"))
    assert "a control must be one of canny:FILE, got 'sobel:" in line
    assert job_count(settings) == before


def controlnet_from_unet(folder: Path) -> Path:
    """A ControlNet for the embedded model, built from its UNet (diffusers' own way to start
    one): untrained, it holds the drawing where a trained one would steer it."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(EMBEDDED_MODEL_DIR / "unet")
    # Three channel widths: the control picture downsampled 4x, as the embedded VAE does.
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64))
    controlnet.save_pretrained(folder)
    return folder


def test_a_controlnet_picture_where_the_model_has_one(
    world: tuple[Settings, dict[str, Any]], tmp_path: Path
) -> None:
    settings, first = world
    source = first["images"][0]["path"]
    without = tmp_path / "plain.toml"
    without.write_text(
        f'[[model]]\nname = "embedded"\nsource = "{EMBEDDED_MODEL_DIR}"\ncontrolnets = {{}}\n'
    )
    line = refused(
        sdbot(settings, "imagine", PROMPT, "--control", f"canny:{source}",
              SDBOT_MODELS_FILE=str(without))
    )  # fmt: skip
    assert line == (
        "sdbot: error: control_type must be none: model embedded has no ControlNet, got 'canny'"
    )

    canny = controlnet_from_unet(tmp_path / "canny")
    models = tmp_path / "models.toml"
    models.write_text(
        f'[[model]]\nname = "embedded"\nsource = "{EMBEDDED_MODEL_DIR}"\n'
        f'controlnets = {{ canny = "{canny}" }}\n'
    )
    drawn = run_json(
        settings, "imagine", PROMPT, "--control", f"canny:{source}", "--control-strength",
        "0.5", "--variants", "1", "--seed", "3", SDBOT_MODELS_FILE=str(models),
    )  # fmt: skip
    assert drawn["status"] == "succeeded"
    assert (drawn["control"], drawn["control_scale"], drawn["start"]) == ("canny", 0.5, "text")
    [given] = drawn["inputs"]
    assert (given["role"], given["sha256"]) == ("control", sha256(source))
    line = refused(
        sdbot(settings, "imagine", PROMPT, "--control", f"canny:{source}", "--image", source,
              SDBOT_MODELS_FILE=str(models))
    )  # fmt: skip
    assert "a prompt without image:" in line


def test_describe_for_another_model_uses_the_caption_model(
    world: tuple[Settings, dict[str, Any]], tmp_path: Path
) -> None:
    settings, first = world
    source = first["images"][0]["path"]
    env = {"SDBOT_MODELS_FILE": str(models_file(tmp_path, EMBEDDED_MODEL_DIR))}
    line = refused(sdbot(settings, "describe", source, "--model", "other", **env))
    assert line.startswith("sdbot: error: model must be the embedded model, or any model once ")
    assert "SDBOT_CAPTION_MODEL" in line
    env["SDBOT_CAPTION_MODEL"] = str(tiny_blip(tmp_path / "blip"))
    captioned = run_json(settings, "describe", source, "--model", "other", **env)
    assert captioned["model"] == "other"
    assert captioned["prompts"]
    assert all(set(p.split()) <= set(CAPTION_WORDS) for p in captioned["prompts"])
    assert (
        run_json(settings, "describe", source, "--model", "other", **env)
        | {"job_id": captioned["job_id"]}
        == captioned
    )  # the same captions each time
