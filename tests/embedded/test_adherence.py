from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generation.embedded.adherence import (
    ATTRIBUTES,
    GOALS,
    AdherenceReport,
    _Tally,
    run_adherence,
    score_picture,
)
from generation.embedded.analyser import analyse
from generation.embedded.prompts import benchmark_cases
from generation.embedded.scenes import PALETTE, render_scene

from .conftest import DPM_NUMPY_WARNING


def test_ground_truth_scores_full_marks_and_a_blank_picture_scores_none() -> None:
    rng = np.random.default_rng(0)
    cases = benchmark_cases()
    truth, truth_pairs = _Tally(), _Tally()
    blank, blank_pairs = _Tally(), _Tally()
    for case in cases:
        score_picture(case, analyse(render_scene(case.scene, rng)), truth, truth_pairs)
        flat = np.full((64, 64, 3), PALETTE[case.scene.objects[0].colour], dtype=np.uint8)
        score_picture(case, analyse(flat), blank, blank_pairs)
    assert min(truth.shares().values()) >= 0.97
    assert truth.total["position"] < truth.total["colour"]  # twins state no position
    assert blank.shares() == dict.fromkeys(ATTRIBUTES, 0.0)


@pytest.mark.filterwarnings(DPM_NUMPY_WARNING)
def test_run_adherence_reports_every_attribute(smoke_model: Path) -> None:
    lines: list[str] = []
    report = run_adherence(smoke_model, steps=1, guidance_scale=2.0, progress=lines.append)
    assert isinstance(report, AdherenceReport)
    assert report.prompts == len(benchmark_cases()) == len(lines)
    assert report.images == 4 * report.prompts
    data = report.to_dict()
    generated = data["generated"]
    truth = data["analyser_on_ground_truth"]
    assert isinstance(generated, dict)
    assert isinstance(truth, dict)
    assert set(generated) == set(ATTRIBUTES)
    assert data["goals"] == GOALS
    assert min(truth.values()) >= 0.97
    text = report.to_text()
    for attribute in ATTRIBUTES:
        assert attribute in text
    assert "90%" in text
    assert "analyser on truth" in text


def test_missing_model_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        run_adherence(tmp_path)
