from __future__ import annotations

from types import SimpleNamespace

from sam2tool.training.progress import TrainingProgressBar


def describe(max_epochs: int, max_steps: int) -> str:
    bar = TrainingProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs, max_steps=max_steps)  # type: ignore[assignment]
    return bar._get_train_description(3).strip()


def test_step_limited_runs_do_not_show_a_negative_epoch_count() -> None:
    assert describe(-1, 400) == "Epoch 3 (400-step run)"
    assert describe(40, -1) == "Epoch 3/39"
