from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sam2tool.training.run_files import MetricsCSV, plot_curves


def test_curves_png_of_a_metrics_csv(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.csv"
    assert plot_curves(metrics, tmp_path / "curves.png") is None  # no file yet
    logger = MetricsCSV(metrics)
    logger.save()
    for step in range(20):
        logger.log_metrics({"loss": 2.0 / (step + 1), "epoch": 0}, step)
        if step % 5 == 4:
            logger.log_metrics({"val/J&F": step / 20}, step)
    logger.finalize("success")
    picture = plot_curves(metrics, tmp_path / "curves.png")
    assert picture == tmp_path / "curves.png"
    image = np.asarray(Image.open(picture))
    assert image.shape[:2] == (500, 900) and image.std() > 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "metrics.csv"]  # no temporary file left


def test_no_curves_without_losses_or_scores(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.csv"
    logger = MetricsCSV(metrics)
    logger.log_metrics({"epoch": 0}, 0)
    logger.finalize("success")
    assert plot_curves(metrics, tmp_path / "curves.png") is None
