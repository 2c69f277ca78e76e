"""On a CUDA GPU: bf16 training with validation, and compiled prediction equal to eager."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sam2tool.config.loading import load_settings
from sam2tool.data.images import read_label_mask
from tests.conftest import micro_run_settings, prepare_synthetic

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


def test_bf16_training_on_cuda_with_validation(tmp_path: Path) -> None:
    from sam2tool.services.train import train

    data = prepare_synthetic(tmp_path / "data", videos=4, frames=8, size=128, val_fraction=0.5)
    settings = micro_run_settings(
        data,
        tmp_path / "runs",
        "dataset.image_size=128",
        "dataset.num_workers=2",
        "trainer.accelerator=cuda",
        "trainer.precision=bf16-mixed",
        "trainer.max_steps=6",
        "trainer.val_check_interval=3",
        "scheduler.warmup_steps=2",
        cpu=False,
    )
    result = train(settings)
    assert result.global_step == 6
    assert math.isfinite(result.metrics["loss"]) and 0.0 <= result.metrics["val/J&F"] <= 1.0
    assert result.last_checkpoint.is_file()


def test_compiled_prediction_equals_eager(tmp_path: Path) -> None:
    from sam2tool.data.frames import FolderFrames
    from sam2tool.models.prompts import ground_truth_prompts
    from sam2tool.models.tracking import load_predictor, track

    data = prepare_synthetic(tmp_path / "data", videos=2, frames=8, size=128, val_fraction=0.5)
    settings = load_settings(None, ["model.size=micro", "model.checkpoint=null"])
    video = data / "JPEGImages" / "synthetic_000"
    frames = FolderFrames(video)
    names = [frames.name(i) for i in range(len(frames))]
    prompts = ground_truth_prompts(data / "Annotations" / "synthetic_000", names, "mask", "davis")
    outputs = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        predictor = load_predictor(settings, 128, "cuda", compile=compiled)
        outputs[compiled] = tmp_path / f"masks-{compiled}"
        track(predictor, frames, outputs[compiled], prompts)
    agree = [
        np.mean(read_label_mask(outputs[False] / f"{n}.png") == read_label_mask(outputs[True] / f"{n}.png"))
        for n in names
    ]
    assert min(agree) > 0.99
