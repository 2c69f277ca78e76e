"""The LightningModule that fine-tunes SAM 2: training step, optimizer, validation J&F.

The SAM 2 model is the attribute ``model``, so checkpoints hold its weights under ``model.<key>``
(what ``sam2tool.models.checkpoints`` reads back). Every random decision of a training step (clip
prompts, click sampling, drop-path, dropout) is drawn from generators seeded by
``(trainer.seed, epoch, batch index, rank)``: a resumed run repeats the interrupted one exactly.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from sam2tool import __version__
from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.data.clips import ClipBatch
from sam2tool.data.datamodule import ValidationVideo
from sam2tool.data.layout import manifest_fingerprint
from sam2tool.errors import Sam2ToolError
from sam2tool.models.build import BuiltModel, build_model
from sam2tool.models.checkpoints import CHECKPOINT_META_KEY
from sam2tool.models.lora import add_lora, merged_state_dict, set_frozen_eval
from sam2tool.models.train_forward import PromptSimulation, enable_activation_checkpointing, forward_clip
from sam2tool.training.loss import SAM2Loss
from sam2tool.training.optim import build_optimizer, build_scheduler
from sam2tool.training.validation import OVERLAY_VIDEOS, VideoValidator

log = logging.getLogger(__name__)

#: Key of sam2tool's own entry in a checkpoint (plain data only, so it loads with weights_only).
CHECKPOINT_KEY = CHECKPOINT_META_KEY
#: Metrics logged by the training step.
TRAIN_METRICS = ("loss", "loss_bce", "loss_dice", "loss_iou", "loss_class", "learning_rate")
#: Metrics logged after each validation.
VAL_METRICS = ("val/J", "val/F", "val/J&F")


class NonFiniteLoss(Sam2ToolError):
    """The loss became NaN or infinite."""

    def __init__(self, step: int, terms: dict[str, float]) -> None:
        bad = ", ".join(f"{k}={v}" for k, v in terms.items() if not math.isfinite(v))
        super().__init__(f"the loss is not finite at step {step} ({bad})")
        self.step = step


class SAM2LightningModule(L.LightningModule):
    """SAM 2 training as configured by ``settings``.

    Args:
        settings: All settings of the run.
        built: The model to train (built from ``settings`` when None).
        validator: Tracks and scores held-out videos (no validation when None).

    """

    def __init__(
        self, settings: Sam2ToolSettings, built: BuiltModel | None = None, validator: VideoValidator | None = None
    ) -> None:
        super().__init__()
        self.settings = settings
        if built is None:
            built = build_model(settings.model, settings.dataset.image_size, progress=settings.logging.progress)
        self.built = built
        self.model = built.model
        m = settings.model
        if m.lora_targets:
            adapters = add_lora(self.model, m.lora_targets, m.lora_rank, m.lora_alpha, m.lora_dropout)
            log.info("LoRA adapters on %s: %s parameters", ", ".join(m.lora_targets), f"{adapters:,}")
        if m.activation_checkpointing:
            enable_activation_checkpointing(self.model)
        self.criterion = SAM2Loss(settings.loss, pred_obj_scores=bool(getattr(self.model, "pred_obj_scores", True)))
        self.simulation = PromptSimulation.from_settings(m)
        self.validator = validator
        self._val_j: list[float] = []
        self._val_f: list[float] = []
        self._data = manifest_fingerprint(settings.dataset.root)
        self.logged_this_step = True

    # ----------------------------------------------------------------------------------- training

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Clip batches move to the device; validation videos stay paths (frames are streamed)."""
        if isinstance(batch, ClipBatch):
            return batch.to(device, non_blocking=True)
        return batch

    def _step_seed(self, batch_idx: int) -> list[int]:
        return [self.settings.trainer.seed, self.current_epoch, batch_idx, self.global_rank]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Frozen components run in eval mode (no dropout or drop-path where nothing learns)."""
        set_frozen_eval(self.model)

    def training_step(self, batch: ClipBatch, batch_idx: int) -> torch.Tensor:
        """Track the clips with simulated prompts and return the SAM 2 loss."""
        seed = self._step_seed(batch_idx)
        rng = np.random.default_rng(seed)
        torch.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        images = batch.images.to(self.dtype) if self.dtype in (torch.bfloat16, torch.float16) else batch.images
        outputs = forward_clip(self.model, images, batch.masks, batch.obj_to_frame_idx, self.simulation, rng)
        terms = self.criterion(outputs, batch.masks)
        loss: torch.Tensor = terms["loss"]
        if not loss.requires_grad:
            # Every frame was prompted with its ground-truth mask, which SAM 2 outputs as is: nothing to learn.
            log.debug("Step %d: no frame was predicted; skipped", self.global_step)
            return None  # type: ignore[return-value]
        # The step's one wait for the device: a NaN or infinite loss stops training before the update.
        if not torch.isfinite(loss):
            raise NonFiniteLoss(self.global_step, {k: float(v.detach()) for k, v in terms.items()})
        self.logged_this_step = self._logging_step()  # the progress bar reads metrics back only then
        if self.logged_this_step:  # reading logged tensors back waits for the device: only when they are written
            size = batch.images.shape[1]
            for key, value in terms.items():
                self.log(key, value.detach(), batch_size=size, prog_bar=key == "loss", on_step=True, on_epoch=False)
            self.log("learning_rate", self._learning_rate(), batch_size=size, on_step=True, on_epoch=False)
        return loss

    def _logging_step(self) -> bool:
        """Whether Lightning writes this step's metrics: every ``trainer.log_every_n_steps`` optimizer steps."""
        return (self.global_step + 1) % self.settings.trainer.log_every_n_steps == 0

    def _learning_rate(self) -> float:
        optimizer = self.optimizers()
        groups = optimizer.param_groups if hasattr(optimizer, "param_groups") else []
        rates = [g["lr"] for g in groups if not str(g.get("name", "")).startswith("image_encoder")] or [
            g["lr"] for g in groups
        ]
        return float(max(rates)) if rates else 0.0

    def configure_optimizers(self) -> Any:
        """AdamW over the trainable parameters and the schedule, stepped per optimizer step."""
        optimizer = build_optimizer(self.model, self.settings.optimizer)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = build_scheduler(optimizer, self.settings.scheduler, max(total, 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # --------------------------------------------------------------------------------- validation

    def on_validation_epoch_start(self) -> None:
        """Copy the current weights (adapters merged) into the validation predictor."""
        self._val_j, self._val_f = [], []
        if self.validator is not None:
            self.validator.load(merged_state_dict(self.model), self.device)

    def validation_step(self, video: ValidationVideo, batch_idx: int) -> None:
        """Track one held-out video from its first ground-truth masks and score it.

        The first few videos also go to TensorBoard as pictures of their masks (``val/overlay/<video>``).
        """
        if self.validator is None:
            return
        writers = self._image_writers() if batch_idx < OVERLAY_VIDEOS else []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            score = self.validator.score(video, draw_overlay=bool(writers))
        self._val_j += score.J
        self._val_f += score.F
        if score.overlay is not None:
            for writer in writers:
                writer.add_image(f"val/overlay/{video.name}", score.overlay, self.global_step, dataformats="HWC")

    def _image_writers(self) -> list[Any]:
        """TensorBoard's writers, on the process that logs (rank zero)."""
        if self.global_rank != 0 or self._trainer is None:
            return []
        return [logger.experiment for logger in self.loggers if isinstance(logger, TensorBoardLogger)]

    def on_validation_epoch_end(self) -> None:
        """Average J and F over the objects of every rank's videos and log them."""
        if self.validator is None:
            return
        self.validator.release()
        totals = torch.tensor(
            [sum(self._val_j), sum(self._val_f), float(len(self._val_j))], dtype=torch.float64, device=self.device
        )
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        count = float(totals[2])
        j = float(totals[0]) / count if count else math.nan
        f = float(totals[1]) / count if count else math.nan
        for key, value in zip(VAL_METRICS, (j, f, (j + f) / 2), strict=True):
            self.log(key, value, prog_bar=key == "val/J&F", sync_dist=False, rank_zero_only=False)

    # -------------------------------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add what a resumed run or an export needs, as plain data."""
        spec = self.built.spec
        checkpoint[CHECKPOINT_KEY] = {
            "version": __version__,
            "model": {"version": spec.version, "size": spec.size, "image_size": self.built.image_size},
            "config": self.settings.model_dump(mode="json"),
            "lora": {"alpha": self.settings.model.lora_alpha, "rank": self.settings.model.lora_rank}
            if self.settings.model.lora_targets
            else None,
            "step": self.global_step,
            "epoch": self.current_epoch,
            "data": self._data,
            "validation": self._last_validation(),
            "rng": {
                "torch": torch.random.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": _plain(random.getstate()),
                "numpy": _plain(np.random.get_state(legacy=False)),
            },
        }

    def _last_validation(self) -> dict[str, float] | None:
        """The metrics of the latest validation (what an export's model card reports)."""
        metrics = self.trainer.callback_metrics if self._trainer is not None else {}
        values = {key: float(metrics[key]) for key in VAL_METRICS if key in metrics}
        return values or None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the random generators saved with the checkpoint."""
        rng = (checkpoint.get(CHECKPOINT_KEY) or {}).get("rng")
        if not rng:
            return
        torch.random.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        version, state, gauss = rng["python"]
        random.setstate((version, tuple(state), gauss))
        numpy_state = dict(rng["numpy"])
        numpy_state["state"] = {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], np.uint32)}
        np.random.set_state(numpy_state)


def _plain(value: Any) -> Any:
    """Tuples, dicts and NumPy arrays as lists, dicts and ints (loadable with weights_only)."""
    if isinstance(value, np.ndarray):
        return [int(v) for v in value.tolist()]
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.integer):
        return int(value)
    return value
