"""The training progress bar: Lightning's rich bar, with a description that fits step-limited runs.

It reads the logged metrics only on steps that log them: reading a metric from the GPU makes the
host wait for the device, and Lightning's bar would do it after every step.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class TrainingProgressBar(RichProgressBar):
    """``Epoch 3/39`` when the run is limited by epochs, ``Epoch 3 (400-step run)`` when by steps.

    Lightning's own bar prints ``Epoch 3/-2`` for a run with ``max_epochs=-1`` (``trainer.max_steps``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics: dict[str, int | str | float | dict[str, float]] | None = None

    def get_metrics(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        """The metrics shown, read again only when the module logged this step (``logged_this_step``)."""
        if self._metrics is None or getattr(pl_module, "logged_this_step", True) or not trainer.training:
            self._metrics = super().get_metrics(trainer, pl_module)
        return self._metrics

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        description = f"Epoch {current_epoch}"
        if trainer.max_steps is not None and trainer.max_steps > 0:
            description += f" ({trainer.max_steps}-step run)"
        return f"{description:{len(self.validation_description)}}"
