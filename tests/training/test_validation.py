"""Validation J&F during training is what `evaluate` gives for the same weights on the same videos."""

from __future__ import annotations

from pathlib import Path

import pytest

from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.services.evaluate import evaluate_model
from sam2tool.services.train import TrainResult
from sam2tool.training.run_files import read_metrics
from tests.conftest import BASE_SIZE


def test_validation_j_and_f_equals_evaluate_on_the_checkpoint(
    fine_tuned_base: tuple[TrainResult, Sam2ToolSettings], base_data: Path, tmp_path: Path
) -> None:
    result, settings = fine_tuned_base
    (validated,) = [r for r in read_metrics(result.run_dir / "metrics.csv") if r["val/J&F"]]
    # after the second and last step (logged at step index 1): the weights of last.ckpt
    assert result.global_step == 2 and int(validated["step"]) == 1
    report = evaluate_model(
        settings, BASE_SIZE, base_data, "val", tmp_path / "eval", checkpoint=str(result.last_checkpoint), device="cpu"
    )["model"]
    for key, column in (("J", "val/J"), ("F", "val/F"), ("J&F", "val/J&F")):
        assert float(validated[column]) == pytest.approx(report.overall[key], abs=1e-6), key
    assert report.overall["J&F"] > 0.2  # the fine-tuned base tracks: the comparison is not vacuous
