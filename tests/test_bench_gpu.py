"""`sdbot bench gpu`: the SD 1.5- and SDXL-shaped pipelines have the published sizes and FLOPs
(counted on the meta device, no memory), and a tiny run through the command line (in-process,
the real worker process) builds both shapes, loads them through the product's loader, draws
them raw and through the whole path, and reports sane figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.gpu_report import peak_tflops
from bench.sd_shapes import configs, parameter_counts, unet_pass_flops
from tests.test_edges import Run, cli_env, one_line_error, runner

# The raw call draws in the test's process: diffusers' Euler scheduler (SDXL's) warns there on
# numpy 2 when it sets its sigmas.
EULER_NUMPY_WARNING = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


@pytest.fixture
def cli(
    tmp_path: Path,
    model_dir: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    cli_env(monkeypatch, tmp_path, model_dir, sqlite_url)
    return runner(capsys)


# --- full size, on the meta device -------------------------------------------------------


def test_full_size_shapes_have_the_published_parameter_counts() -> None:
    sd15, sdxl = parameter_counts("sd15"), parameter_counts("sdxl")
    assert sd15 == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    assert sdxl == {
        "unet": 2_567_463_684,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,  # CLIP ViT-L
        "text_encoder_2": 694_659_840,  # OpenCLIP ViT-bigG, with its projection
    }


def test_a_unet_pass_costs_what_the_published_models_cost() -> None:
    """SD 1.5 at 512² px: 0.80 TFLOP a sample (0.40 T multiply-adds), so 1.61 TFLOP an image
    with classifier-free guidance's two samples; SDXL at 1024² px: 13.5 TFLOP."""
    sd15, sdxl = configs("sd15")["unet"], configs("sdxl")["unet"]
    at_512 = unet_pass_flops(sd15, 512, batch=2)
    assert 1.55e12 < at_512 < 1.67e12
    assert unet_pass_flops(sd15, 512, batch=1) == pytest.approx(at_512 / 2, rel=1e-6)
    assert 13.0e12 < unet_pass_flops(sdxl, 1024, batch=2) < 14.0e12
    # Four times the pixels: the convolutions cost 4×, self-attention (tokens²) 16×.
    assert 4.5 < unet_pass_flops(sd15, 1024, batch=2) / at_512 < 7


@pytest.mark.parametrize("shape", ["sd15", "sdxl"])
def test_tiny_shapes_keep_the_architecture(shape: str) -> None:
    full, tiny = configs(shape), configs(shape, tiny=True)
    for key in ("down_block_types", "up_block_types", "mid_block_type", "addition_embed_type"):
        assert tiny["unet"].get(key) == full["unet"].get(key), key
    assert tiny["scheduler"] == full["scheduler"]
    for found in (full, tiny):
        unet = found["unet"]
        encoders = [found[n] for n in ("text_encoder", "text_encoder_2") if n in found]
        # Cross-attention reads the text encoders' hidden states side by side.
        assert unet["cross_attention_dim"] == sum(e["hidden_size"] for e in encoders)
        assert all(e["vocab_size"] == 49408 for e in encoders)  # CLIP's BPE, as shipped
        if unet.get("addition_embed_type") == "text_time":  # SDXL: pooled text + 6 size ids
            assert unet["projection_class_embeddings_input_dim"] == (
                encoders[-1]["projection_dim"] + 6 * unet["addition_time_embed_dim"]
            )
    ratio = full["unet"]["cross_attention_dim"] / full["unet"]["block_out_channels"][0]
    tiny_ratio = tiny["unet"]["cross_attention_dim"] / tiny["unet"]["block_out_channels"][0]
    assert tiny_ratio == pytest.approx(ratio, rel=0.1)
    assert parameter_counts(shape, tiny=True)["unet"] < parameter_counts(shape)["unet"] / 20


def test_the_peak_table_knows_the_usual_devices_by_name() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989
    assert peak_tflops("NVIDIA H100 PCIe") == 756
    assert peak_tflops("NVIDIA H200") == 989
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312
    assert peak_tflops("NVIDIA L40S") == 362
    assert peak_tflops("NVIDIA L4") == 121
    assert peak_tflops("NVIDIA GeForce RTX 4090") == 165
    assert peak_tflops("Some Future Accelerator") is None


# --- the command line, tiny, on this CPU ---------------------------------------------------


def _row(shape: dict[str, Any]) -> dict[str, Any]:
    assert len(shape["rows"]) == 1
    row: dict[str, Any] = shape["rows"][0]
    return row


@pytest.mark.timeout(900)
@pytest.mark.filterwarnings(EULER_NUMPY_WARNING)
def test_a_tiny_run_draws_both_shapes_raw_and_through_the_whole_path(cli: Run) -> None:
    code, out, err = cli(
        "bench", "gpu", "--tiny", "--shapes", "sd15,sdxl", "--steps", "2", "--variants", "1",
        "--runs", "1", "--peak-tflops", "1", "--json",
    )  # fmt: skip
    assert code == 0, err
    reports = {report["shape"]: report for report in json.loads(out)}
    assert list(reports) == ["sd15", "sdxl"]
    for name, report in reports.items():
        assert (report["family"], report["tiny"]) == ({"sd15": "sd1"}.get(name, name), True)
        assert (report["side"], report["steps"], report["variants"]) == (64, 2, 1)
        assert (report["device"], report["dtype"]) == ("cpu", "float32")
        # The FLOPs are the tiny config's at 64 px, with guidance; the floor follows from them.
        flops = unet_pass_flops(configs(name, tiny=True)["unet"], 64, batch=2)
        assert report["unet_pass_flops"] == flops
        assert report["floor_ms_per_image"] == pytest.approx(2 * flops / 1e12 * 1000)
        raw = report["raw"]
        assert raw["call_ms"] > 0
        assert raw["ms_per_image"] == pytest.approx(raw["call_ms"])
        assert raw["its"] == pytest.approx(2 / (raw["call_ms"] / 1000))
        assert raw["batching_gain"] is None  # one image a call: nothing to compare
        assert raw["peak_memory_gb"] is None  # not CUDA
        row = _row(report)
        assert row["fast_path"] == ""
        assert row["first_call_s"] > 0
        assert row["ms_per_image"] > 0
        assert row["ratio"] == pytest.approx(row["ms_per_image"] / raw["ms_per_image"])
        assert row["share_of_floor"] == pytest.approx(
            report["floor_ms_per_image"] / row["ms_per_image"]
        )
        # The path's pictures passed all of it: safety, watermark read back, files written.
        assert (row["images"], row["verified"]) == (1, 1)
        assert row["files"] >= 2  # the warm-up's and the timed job's pictures
        assert report["best_fast_path"] == ""
    # SDXL's UNet has two text encoders' width to attend to and deeper transformer blocks.
    assert reports["sdxl"]["unet_pass_flops"] > reports["sd15"]["unet_pass_flops"]
    assert "text_encoder_2" in reports["sdxl"]["parameters"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--shapes", "sd15,sd3"], "--shapes 'sd15,sd3': sd3; known: sd15, sdxl"),
        (["--fast", "warp_drive"], "--fast 'warp_drive': unknown fast-path switch 'warp_drive'"),
        (["--variants", "5"], "--variants must be from 1 to 4, got 5"),
        (["--size", "100"], "--size must be a multiple of 8 from 64, got 100"),
        (["--peak-tflops", "0"], "--peak-tflops must be above 0, got 0.0"),
    ],
)
def test_bad_arguments_are_refused_by_name(cli: Run, args: list[str], named: str) -> None:
    code, out, err = cli("bench", "gpu", "--tiny", *args)
    assert code == 2
    assert named in one_line_error(err)
    assert out == ""
