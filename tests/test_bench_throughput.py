"""`sdbot bench throughput`: a tiny run through the command line (in-process, the real worker
process and the embedded model) gives sane figures; bad arguments are refused by name; the
device's busy share and the gaps come from the drawing intervals as they should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.throughput import busy_within, gaps, report_from, union
from tests.test_edges import Run, cli_env, runner

# The raw loop draws in the test's process: diffusers' DPM solver on numpy 2 warns there.
DPM_NUMPY_WARNING = (
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
    monkeypatch.setenv("SDBOT_TORCH_THREADS", "1")
    return runner(capsys)


@pytest.mark.filterwarnings(DPM_NUMPY_WARNING)
def test_a_tiny_run_reports_both_rates_and_the_busy_share(cli: Run) -> None:
    code, out, err = cli(
        "bench", "throughput", "--jobs", "3", "--variants", "1", "--steps", "2", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    assert (report["jobs"], report["variants"], report["steps"]) == (3, 1, 2)
    assert report["images"] == 3
    assert report["guilds"] == 3  # one a job when there are fewer jobs than the default 4
    assert report["torch_threads"] == 1
    assert report["path_images_per_s"] > 0
    assert report["raw_images_per_s"] > 0
    assert report["ratio"] == pytest.approx(
        report["path_images_per_s"] / report["raw_images_per_s"]
    )
    assert 0 < report["device_busy"] <= 1
    # Every job was drawn in one of the calls, each call at most a batch's worth of jobs.
    assert report["batches"] >= 1
    assert sum(report["batch_sizes"]) == 3
    assert all(1 <= size <= report["batch_max_jobs"] for size in report["batch_sizes"])
    assert report["gaps"] <= report["batches"] - 1
    assert report["lead_in_s"] >= 0
    assert report["tail_s"] >= 0
    assert 0 < report["drawing_s"] <= report["path_s"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--jobs", "0"], "--jobs must be from 1 to 1000, got 0"),
        (["--variants", "5"], "--variants must be from 1 to 4 (SDBOT_MAX_VARIANTS), got 5"),
        (["--steps", "0"], "--steps must be from 1 to 50 (SDBOT_MAX_STEPS), got 0"),
        (["--jobs", "2", "--guilds", "3"], "--guilds must be from 1 to --jobs (2), got 3"),
        (["--model", "no-such-model"], "--model 'no-such-model' is neither a model in the list"),
    ],
)
def test_bad_arguments_exit_2_naming_the_value(cli: Run, args: list[str], named: str) -> None:
    code, out, err = cli("bench", "throughput", *args)
    assert code == 2, (out, err)
    assert named in err
    assert len(err.strip().splitlines()) == 1, err


def test_intervals_overlapping_or_touching_count_once() -> None:
    assert union([(5.0, 6.0), (0.0, 1.0), (0.5, 2.0), (2.0, 3.0)]) == [(0.0, 3.0), (5.0, 6.0)]
    assert busy_within([(0.0, 1.0), (0.5, 2.0), (5.0, 6.0)], 0.0, 10.0) == 3.0
    assert busy_within([(0.0, 4.0)], 1.0, 3.0) == 2.0  # clipped to the window
    assert gaps([(0.0, 1.0), (1.5, 2.0), (4.0, 5.0)]) == [0.5, 2.0]
    assert gaps([(0.0, 1.0)]) == []


def test_the_report_counts_calls_busy_time_and_where_the_rest_went() -> None:
    # Three calls (jobs 1; 2-5; 6-7) drawn over [1, 2], [2.5, 6.5], [7, 9] of a 10 s path.
    calls = [(1.0, 2.0)] + [(2.5, 6.5)] * 4 + [(7.0, 9.0)] * 2
    report = report_from(
        intervals=calls,
        submitted_at=0.0,
        last_outcome_at=10.0,
        raw_s=6.0,
        model="m",
        device="cpu",
        torch_threads=1,
        jobs=7,
        guilds=2,
        variants=2,
        steps=3,
        size="64x64",
        batch_max_jobs=4,
    )
    assert report.batch_sizes == (1, 4, 2)
    assert report.images == 14
    assert report.drawing_s == 7.0
    assert report.device_busy == pytest.approx(0.7)
    assert report.path_images_per_s == pytest.approx(1.4)
    assert report.raw_images_per_s == pytest.approx(14 / 6)
    assert report.ratio == pytest.approx(1.4 / (14 / 6))
    assert (report.lead_in_s, report.tail_s) == (1.0, 1.0)
    assert report.gaps_s == (0.5, 0.5)
    figures = report.to_dict()
    assert figures["gap_max_s"] == 0.5
    assert figures["idle_s"] == pytest.approx(3.0)
    text = report.to_text()
    assert "jobs per call: 1, 4, 2" in text
    assert "70.0 %" in text
    assert "not met" in text
