"""The training progress bar: Lightning's rich bar, with a description that fits step-limited runs."""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar


class TrainingProgressBar(RichProgressBar):
    """``Epoch 3/39`` when the run is limited by epochs, ``Epoch 3 (400-step run)`` when by steps.

    Lightning's own bar prints ``Epoch 3/-2`` for a run with ``max_epochs=-1`` (``trainer.max_steps``).
    """

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        description = f"Epoch {current_epoch}"
        if trainer.max_steps is not None and trainer.max_steps > 0:
            description += f" ({trainer.max_steps}-step run)"
        return f"{description:{len(self.validation_description)}}"
