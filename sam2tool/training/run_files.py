"""The files of a training run: its folder, checkpoints, metrics.csv, training.log and curves.

A run folder is ``<output.dir>/YYYY-MM-DD/HH-MM-SS/`` (under SLURM or torchrun, every process
derives the same name from the job id instead). It holds the resolved ``config.yaml``,
``training.log``, ``metrics.csv``, ``checkpoints/last.ckpt`` plus the best by validation J&F,
``tensorboard/`` (TensorBoard's event files) and ``curves.png`` at the end. Checkpoints are
written to a temporary sibling, fsynced and renamed, so killing the process at any moment leaves
a loadable ``last.ckpt``.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from sam2tool.atomic import atomic_path
from sam2tool.metrics.plots import curves_figure, save_figure

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
CONFIG_FILE = "config.yaml"
LOG_FILE = "training.log"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
TENSORBOARD_DIR = "tensorboard"
#: Environment variable that hands the run folder of rank 0 to the processes Lightning launches.
RUN_DIR_ENV = "_SAM2TOOL_RUN_DIR"
#: Columns of metrics.csv, in order.
METRIC_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "loss_bce",
    "loss_dice",
    "loss_iou",
    "loss_class",
    "learning_rate",
    "val/J",
    "val/F",
    "val/J&F",
)


def new_run_dir(output_dir: Path, now: dt.datetime | None = None) -> Path:
    """The folder of a new run: ``<output_dir>/YYYY-MM-DD/HH-MM-SS`` (never an existing one).

    Processes that Lightning launches for the other ranks inherit rank 0's folder through
    :data:`RUN_DIR_ENV`; under SLURM and torchrun, every rank names the folder after the job.
    """
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    now = now or dt.datetime.now()
    day = output_dir / now.strftime("%Y-%m-%d")
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if os.environ.get("SLURM_JOB_ID") or job != "none":
        prefix = "slurm" if os.environ.get("SLURM_JOB_ID") else "torchrun"
        return day / f"{prefix}-{job}"
    base = now.strftime("%H-%M-%S")
    candidate, n = day / base, 1
    while candidate.exists():
        candidate, n = day / f"{base}-{n}", n + 1
    return candidate


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints to a temporary sibling, fsyncs and renames; loads with weights_only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Save ``checkpoint`` to ``path`` atomically."""
        with atomic_path(Path(path)) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Load a checkpoint with ``weights_only=True`` (no code runs from the file)."""
        return super().load_checkpoint(
            path, map_location=map_location or (lambda storage, loc: storage), weights_only=True
        )


class LastCheckpoint(Checkpoint):
    """Keeps ``checkpoints/last.ckpt`` current: every N steps, after validation, at the end, on SIGTERM.

    A ``Checkpoint`` callback, so Lightning runs it after the other callbacks, and list it after the
    best-checkpoint ``ModelCheckpoint``: the state it saves after a validation then includes that
    validation's best checkpoint and early-stopping count, which a resumed run continues from.

    Args:
        folder: The run's checkpoints folder.
        every_n_steps: Optimizer steps between saves (None: only after validation and at the end).

    """

    def __init__(self, folder: Path, every_n_steps: int | None) -> None:
        self.path, self.every_n_steps = folder / LAST_CHECKPOINT, every_n_steps
        self.saved_step = -1
        self.saved_on_sigterm = False

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)
        self.saved_step = trainer.global_step
        log.debug("Saved %s at step %d", self.path, trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """Save every N optimizer steps, and before Lightning stops on SIGTERM."""
        step = trainer.global_step
        if trainer.received_sigterm:
            if step != self.saved_step:
                self._save(trainer)
            self.saved_on_sigterm = True
            return
        if self.every_n_steps and step != self.saved_step and step % self.every_n_steps == 0:
            self._save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save after each validation (the early-stopping and best-checkpoint state changed)."""
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the final state."""
        if trainer.global_step != self.saved_step:
            self._save(trainer)


class MetricsCSV(Logger):
    """``metrics.csv``: one row per logging step with fixed columns, appended across resumes.

    Args:
        path: The CSV file.
        resume_step: When resuming, rows after this step (logged after the checkpoint, then lost)
            are dropped so the file matches the resumed run.

    """

    def __init__(self, path: Path, resume_step: int | None = None) -> None:
        super().__init__()
        self.path = path
        self._pending: dict[int, dict[str, Any]] = {}
        if resume_step is not None and path.is_file():
            rows = [r for r in read_metrics(path) if int(float(r["step"])) <= resume_step]
            self._write(rows, mode="w")

    @property
    def name(self) -> str:
        """Logger name."""
        return "metrics"

    @property
    def version(self) -> str:
        """Logger version."""
        return ""

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """config.yaml holds the settings; nothing to do."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Collect this step's metrics (written by :meth:`save`)."""
        row = self._pending.setdefault(int(step or 0), {"step": int(step or 0)})
        for key, value in metrics.items():
            if key in METRIC_COLUMNS:
                row[key] = float(value)
        if "epoch" in metrics:
            row["epoch"] = int(metrics["epoch"])

    @rank_zero_only
    def save(self) -> None:
        """Append the collected rows."""
        if self._pending:
            rows, self._pending = [self._pending[k] for k in sorted(self._pending)], {}
            self._write(rows, mode="a")

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Write what is left."""
        self.save()

    def _write(self, rows: list[dict[str, Any]], mode: str) -> None:
        new = mode == "w" or not self.path.is_file()
        if new:
            with atomic_path(self.path) as tmp, tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
            return
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=METRIC_COLUMNS).writerows(rows)


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a metrics.csv."""
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def tensorboard_available() -> bool:
    """Whether Lightning's TensorBoard logger can write here (it needs tensorboard or tensorboardX)."""
    return any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


def read_series(rows: list[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
    """The steps and values of the rows of a metrics.csv that have ``key``."""
    pairs = [(int(float(r["step"])), float(r[key])) for r in rows if r.get(key)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_curves(metrics: Path, output: Path) -> Path | None:
    """Plot the training loss and validation J&F of ``metrics`` into a PNG; None without data."""
    if not metrics.is_file():
        return None
    rows = read_metrics(metrics)
    loss, jf = read_series(rows, "loss"), read_series(rows, "val/J&F")
    if not loss[1] and not jf[1]:
        return None
    return save_figure(curves_figure(loss, jf), output)


def attach_file_log(path: Path, level: str) -> Callable[[], None]:
    """Copy sam2tool's and Lightning's log records into ``path``; returns a function that detaches it."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG if level == "DEBUG" else getattr(logging, level))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger("sam2tool"), logging.getLogger("lightning.pytorch")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > handler.level:
            logger.setLevel(handler.level)

    def detach() -> None:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
        handler.close()

    return detach
