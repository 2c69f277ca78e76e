"""A training step makes the host wait for the device at most once between logging steps.

A host sync is any read of a tensor's value on the host: ``Tensor.item``, ``tolist`` and
``__bool__`` are counted while Lightning runs each batch (the step, backward, the optimizer and the
callbacks, the progress bar included). The one allowed is the finiteness check that stops training
at a NaN loss before the update.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from sam2tool.services.train import train
from sam2tool.training.lightning_module import SAM2LightningModule
from sam2tool.training.optim import build_optimizer, fused_supported
from tests.conftest import micro_run_settings, prepare_synthetic

LOG_EVERY = 3
STEPS = 7


def test_at_most_one_host_sync_per_step_between_logging_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = prepare_synthetic(tmp_path / "data", videos=3, frames=6, size=64)
    counting = {"on": False, "count": 0}

    def counted(original: Callable[..., Any]) -> Callable[..., Any]:
        def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if counting["on"]:
                counting["count"] += 1
            return original(self, *args, **kwargs)

        return read

    for name in ("item", "tolist", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counted(getattr(torch.Tensor, name)))
    per_step: list[int] = []
    start = SAM2LightningModule.on_train_batch_start

    def batch_start(self: SAM2LightningModule, batch: Any, batch_idx: int) -> None:
        counting.update(on=True, count=0)
        start(self, batch, batch_idx)

    def batch_end(self: SAM2LightningModule, *args: Any) -> None:  # after the callbacks' (the progress bar's)
        counting["on"] = False
        per_step.append(counting["count"])

    monkeypatch.setattr(SAM2LightningModule, "on_train_batch_start", batch_start)
    monkeypatch.setattr(SAM2LightningModule, "on_train_batch_end", batch_end)
    overrides = [
        f"trainer.max_steps={STEPS}",
        f"trainer.log_every_n_steps={LOG_EVERY}",
        "trainer.val_check_interval=8",  # no validation within the run
        "output.checkpoint_every_n_steps=100",
        "logging.progress=true",
    ]
    result = train(micro_run_settings(data, tmp_path / "runs", *overrides))
    assert len(per_step) == STEPS
    logging_steps = {step for step in range(STEPS) if (step + 1) % LOG_EVERY == 0}
    assert all(count <= 1 for step, count in enumerate(per_step) if step not in logging_steps), per_step
    assert all(count >= 1 for count in per_step)  # the finiteness check is counted: the counting works
    # The metrics are still written at every logging step.
    rows = (result.run_dir / "metrics.csv").read_text(encoding="utf-8").splitlines()
    logged = [int(row.split(",")[0]) for row in rows[1:] if row.split(",")[2]]
    assert logged == sorted(logging_steps)


def test_adamw_is_fused_where_the_device_allows_it() -> None:
    model = torch.nn.Linear(4, 2)
    from sam2tool.config.schema import OptimizerSettings

    optimizer = build_optimizer(model, OptimizerSettings())
    assert optimizer.defaults["fused"] is True  # torch has fused AdamW kernels for the CPU
    assert fused_supported(list(model.parameters()))
    assert not fused_supported([torch.zeros(2, dtype=torch.int64)])
