"""``train`` and ``resume``: fine-tune SAM 2 with Lightning into a run folder.

The service checks the data, creates the run folder (``config.yaml``, ``training.log``), builds
the model, the DataModule and the Trainer from the settings, fits, and turns the ways training
can end (finished, early-stopped, SIGTERM, NaN loss, out of memory) into results or errors that
name the checkpoint to continue from.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import signal
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from sam2tool.atomic import atomic_write_text
from sam2tool.config.loading import load_settings
from sam2tool.config.problems import ConfigError
from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.config.sources import override_keys
from sam2tool.config.yaml_writer import render_settings_yaml
from sam2tool.data.datamodule import ClipDataModule
from sam2tool.errors import Sam2ToolError, Terminated, UsageError
from sam2tool.models.checkpoints import read_checkpoint_metadata
from sam2tool.training.lightning_module import NonFiniteLoss, SAM2LightningModule
from sam2tool.training.memory_advice import out_of_memory_advice
from sam2tool.training.progress import TrainingProgressBar
from sam2tool.training.run_files import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    CURVES_FILE,
    LAST_CHECKPOINT,
    LOG_FILE,
    METRICS_FILE,
    RUN_DIR_ENV,
    TENSORBOARD_DIR,
    AtomicCheckpointIO,
    LastCheckpoint,
    MetricsCSV,
    attach_file_log,
    new_run_dir,
    plot_curves,
    tensorboard_available,
)
from sam2tool.training.validation import VideoValidator, check_validation_videos

log = logging.getLogger(__name__)

#: Settings a resumed run may change on its command line (they do not change what was learned).
RESUMABLE_CHANGES = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.early_stopping_patience",
    "trainer.val_check_interval",
    "trainer.limit_val_batches",
    "trainer.log_every_n_steps",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.accelerator",
    "trainer.detect_anomaly",
    "dataset.num_workers",
    "logging.level",
    "logging.progress",
    "logging.tensorboard",
    "logging.wandb",
    "logging.wandb_project",
    "logging.wandb_entity",
    "logging.wandb_mode",
    "logging.run_name",
    "output.save_top_k",
    "output.checkpoint_every_n_steps",
    "model.cache_dir",
    "model.download_url",
)
#: Settings that decide which weights exist: never changed on resume.
ARCHITECTURE_KEYS = (
    "model.size",
    "model.version",
    "dataset.image_size",
    "model.lora_targets",
    "model.lora_rank",
    "model.trainable_modules",
)


@dataclass
class TrainResult:
    """What a run produced."""

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_score: float | None
    global_step: int
    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    curves: Path | None = None


def run_dir_of(target: Path) -> tuple[Path, Path]:
    """The run folder and checkpoint that ``sam2tool resume TARGET`` continues from.

    Raises:
        UsageError: The path does not exist, is not a run folder, or holds no checkpoint.

    """
    if not target.exists():
        raise UsageError(f"{target} does not exist; give a run folder (outputs/<date>/<time>) or a .ckpt file in one")
    if target.is_file():
        run_dir = target.parent.parent if target.parent.name == CHECKPOINTS_DIR else target.parent
        checkpoint = target
    else:
        run_dir, checkpoint = target, target / CHECKPOINTS_DIR / LAST_CHECKPOINT
    if not (run_dir / CONFIG_FILE).is_file():
        raise UsageError(f"{run_dir} is not a sam2tool run folder (no {CONFIG_FILE}); resume needs the run's folder")
    if not checkpoint.is_file():
        raise UsageError(
            f"{run_dir} has no checkpoint ({checkpoint.relative_to(run_dir)} is missing): the run stopped before its "
            "first checkpoint; start it again with `sam2tool train --config "
            f"{run_dir / CONFIG_FILE}`"
        )
    return run_dir, checkpoint


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, values in data.items() for key, value in values.items()}


def check_resume_config(checkpoint_config: Mapping[str, Any], settings: Sam2ToolSettings, changed: set[str]) -> None:
    """Refuse a resume whose settings differ from the checkpoint's, except deliberate changes.

    Args:
        checkpoint_config: The settings saved in the checkpoint (``model_dump(mode="json")``).
        settings: The settings of the resumed run.
        changed: Dotted keys given on the resume command line (deliberate changes).

    Raises:
        UsageError: What differs, and how to proceed.

    """
    saved = _flatten(checkpoint_config)
    now = _flatten(settings.model_dump(mode="json"))
    differ = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
    architecture = [k for k in differ if k in ARCHITECTURE_KEYS]
    if architecture:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in architecture)
        raise UsageError(
            f"the checkpoint was trained with a different model ({details}); its weights cannot continue in this "
            "model. Resume with the run's own settings, or start a new run with `sam2tool train` and "
            "model.checkpoint=<this checkpoint>"
        )
    undeclared = [k for k in differ if k not in changed]
    if undeclared:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, config.yaml {now.get(k)!r}" for k in undeclared)
        raise UsageError(
            f"config.yaml no longer matches the checkpoint ({details}); to change a setting deliberately pass it on "
            "the resume command line (e.g. trainer.max_epochs=60), otherwise restore config.yaml"
        )
    forbidden = [k for k in differ if k not in RESUMABLE_CHANGES]
    if forbidden:
        raise UsageError(
            f"{', '.join(forbidden)} cannot change on resume (the run would not continue exactly); allowed: "
            + ", ".join(RESUMABLE_CHANGES)
            + ". Start a new run from the checkpoint with model.checkpoint=<path> instead"
        )


def _is_rank_zero() -> bool:
    return getattr(rank_zero_only, "rank", 0) == 0


def _strategy(name: str) -> Any:
    """Lightning's strategy for ``trainer.strategy``.

    DDP finds unused parameters, as the official recipe does: a step prompted with masks never
    uses the point embeddings, one without corrections never uses some decoder tokens.
    """
    if name in ("ddp", "ddp_spawn"):
        return DDPStrategy(find_unused_parameters=True, start_method="spawn" if name == "ddp_spawn" else "popen")
    return name


def _wandb_id(run_dir: Path) -> str:
    return "sam2tool-" + hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]


def train(
    settings: Sam2ToolSettings,
    *,
    debug: bool = False,
    run_dir: Path | None = None,
    checkpoint: Path | None = None,
    config_text: str | None = None,
) -> TrainResult:
    """Train as ``settings`` say; with ``checkpoint``, continue that run exactly (resume).

    The recipe, in order: data, run folder, model, callbacks, loggers, trainer, fit, result.

    Args:
        settings: All settings.
        debug: A fast dev run (two batches, two validation videos), anomaly detection.
        run_dir: Write into this existing run folder (resume) instead of a new one.
        checkpoint: Lightning checkpoint to continue from.
        config_text: The resolved config.yaml to write (default: rendered from ``settings``).

    Raises:
        ConfigError: dataset.root is not set, or logging.tensorboard is on without TensorBoard installed.
        DataError: No usable training clip or validation video.
        Terminated: SIGTERM; the checkpoint saved is named.
        Sam2ToolError: Out of memory, a non-finite loss, or a checkpoint that does not load.

    """
    _check_loggers(settings, debug)
    data, validate = _data(settings)
    with _run_folder(settings, run_dir, config_text, debug) as run:
        validator = (
            VideoValidator(settings.model, settings.dataset.image_size, run / ".validation") if validate else None
        )
        module = SAM2LightningModule(settings, validator=validator)
        callbacks = _Callbacks.for_run(settings, run / CHECKPOINTS_DIR, validate)
        trainer = L.Trainer(
            **_trainer_arguments(settings, validate, debug),
            callbacks=callbacks.in_order(),
            logger=_loggers(settings, run, _step_of(checkpoint), debug),
            plugins=[AtomicCheckpointIO()],
            default_root_dir=str(run),
        )
        _fit(trainer, module, data, checkpoint, callbacks.last, run)
        return _result(trainer, run, callbacks)


def _data(settings: Sam2ToolSettings) -> tuple[ClipDataModule, bool]:
    """The DataModule, set up for fitting, and whether there are held-out videos to validate on."""
    if settings.dataset.root is None:
        raise ConfigError.single(
            "dataset.root", "is not set; point it at a folder written by `sam2tool prepare-data`", value=None
        )
    L.seed_everything(settings.trainer.seed, workers=True, verbose=False)
    data = ClipDataModule(settings.dataset, seed=settings.trainer.seed)
    data.setup("fit")
    validate = settings.trainer.limit_val_batches != 0 and bool(data.val_videos)
    if validate:
        check_validation_videos(data.val_videos, settings.dataset.val_split)
    elif settings.trainer.limit_val_batches != 0:
        log.warning("splits/%s.txt lists no video: training without validation J&F", settings.dataset.val_split)
    return data, validate


@contextlib.contextmanager
def _run_folder(
    settings: Sam2ToolSettings, run_dir: Path | None, config_text: str | None, debug: bool
) -> Iterator[Path]:
    """The run folder (new, or ``run_dir`` on resume) with its config.yaml and training.log, for the block.

    The processes Lightning launches for the other ranks re-run this command: they find the
    folder through :data:`RUN_DIR_ENV`, set for the block and restored after it.
    """
    resuming = run_dir is not None
    run_dir = run_dir or new_run_dir(settings.output.dir)
    inherited = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    rank_zero = _is_rank_zero()
    if rank_zero:
        (run_dir / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
        if not resuming or config_text is not None:
            text = config_text or render_settings_yaml(settings, f"sam2tool run {run_dir}: the resolved settings")
            atomic_write_text(run_dir / CONFIG_FILE, text)
    level = "DEBUG" if debug else settings.logging.level
    detach_log = attach_file_log(run_dir / LOG_FILE, level) if rank_zero else None
    try:
        log.info("Run folder: %s", run_dir)
        yield run_dir
    finally:
        if detach_log is not None:
            detach_log()
        if inherited is None:
            os.environ.pop(RUN_DIR_ENV, None)


@dataclass(frozen=True)
class _Callbacks:
    """The run's callbacks: the best checkpoint by validation J&F, early stopping, progress, last.ckpt."""

    last: LastCheckpoint
    best: ModelCheckpoint | None = None
    early_stopping: EarlyStopping | None = None
    progress: TrainingProgressBar | None = None

    @classmethod
    def for_run(cls, settings: Sam2ToolSettings, checkpoints: Path, validate: bool) -> _Callbacks:
        best = early_stopping = None
        if validate and settings.output.save_top_k != 0:
            best = ModelCheckpoint(
                dirpath=checkpoints,
                filename="best-step{step}",
                monitor="val/J&F",
                mode="max",
                save_top_k=settings.output.save_top_k,
                auto_insert_metric_name=False,
                save_on_train_epoch_end=False,
            )
        if validate and settings.trainer.early_stopping_patience:
            early_stopping = EarlyStopping(
                monitor="val/J&F", mode="max", patience=settings.trainer.early_stopping_patience, check_finite=False
            )
        return cls(
            last=LastCheckpoint(checkpoints, settings.output.checkpoint_every_n_steps),
            best=best,
            early_stopping=early_stopping,
            progress=TrainingProgressBar(leave=True) if settings.logging.progress else None,
        )

    def in_order(self) -> list[Callback]:
        """For the Trainer: last.ckpt comes after best and early stopping, so it holds their state after validation."""
        middle = [c for c in (self.best, self.early_stopping, self.progress) if c is not None]
        return [LearningRateMonitor(logging_interval="step"), *middle, self.last]


def _step_of(checkpoint: Path | None) -> int | None:
    """The global step a resumed run continues from (metrics.csv drops later rows)."""
    if checkpoint is None:
        return None
    meta = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return int(meta.get("global_step", 0))


def _check_loggers(settings: Sam2ToolSettings, debug: bool) -> None:
    """Refuse, before any work, a logger that cannot run here."""
    if settings.logging.tensorboard and not debug and not tensorboard_available():
        raise ConfigError.single(
            "logging.tensorboard",
            "is true but TensorBoard is not installed; install it (`pip install tensorboard`) or set "
            "logging.tensorboard=false",
            value=True,
        )


def _loggers(settings: Sam2ToolSettings, run_dir: Path, resume_step: int | None, debug: bool) -> list[Logger]:
    """metrics.csv; TensorBoard and Weights & Biases when ``logging.tensorboard`` and ``logging.wandb`` (not in debug).

    TensorBoard writes to ``<run>/tensorboard/`` always (no version subfolder); a resumed run adds
    an event file there and hides the events the interrupted run logged after its checkpoint.
    """
    loggers: list[Logger] = [MetricsCSV(run_dir / METRICS_FILE, resume_step=resume_step if _is_rank_zero() else None)]
    if settings.logging.tensorboard and not debug:
        # Steps are logged from 0: the batch that made global step N logged at N - 1, so what a resumed
        # run logs starts at the checkpoint's step, and events from there on are the lost ones.
        purge: dict[str, Any] = {} if resume_step is None else {"purge_step": resume_step}
        loggers.append(
            TensorBoardLogger(save_dir=str(run_dir), name=TENSORBOARD_DIR, version="", default_hp_metric=False, **purge)
        )
    if settings.logging.wandb and not debug:
        loggers.append(
            WandbLogger(
                project=settings.logging.wandb_project,
                entity=settings.logging.wandb_entity,
                name=settings.logging.run_name or f"{run_dir.parent.name}/{run_dir.name}",
                save_dir=str(run_dir),
                id=_wandb_id(run_dir),
                resume="allow",
                mode=settings.logging.wandb_mode,
                config=settings.model_dump(mode="json"),
            )
        )
    return loggers


#: ``trainer.*`` settings that are Lightning Trainer arguments of the same name and meaning.
TRAINER_ARGUMENTS = (
    "accelerator",
    "devices",
    "num_nodes",
    "precision",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "val_check_interval",
    "limit_train_batches",
    "log_every_n_steps",
    "deterministic",
)


def _trainer_arguments(settings: Sam2ToolSettings, validate: bool, debug: bool) -> dict[str, Any]:
    """Lightning Trainer arguments: :data:`TRAINER_ARGUMENTS` as set, and those sam2tool decides."""
    t = settings.trainer
    return {
        **{name: getattr(t, name) for name in TRAINER_ARGUMENTS},
        "strategy": _strategy(t.strategy),
        "max_epochs": t.max_epochs if t.max_epochs is not None else -1,
        "max_steps": t.max_steps if t.max_steps is not None else -1,
        "limit_val_batches": t.limit_val_batches if validate else 0,
        "detect_anomaly": t.detect_anomaly or debug,
        "fast_dev_run": 2 if debug else False,
        "num_sanity_val_steps": 0,
        "use_distributed_sampler": False,  # the DataModule shards clips by rank itself
        "enable_progress_bar": settings.logging.progress,
        "enable_model_summary": debug,
    }


def _fit(
    trainer: L.Trainer,
    module: SAM2LightningModule,
    data: ClipDataModule,
    checkpoint: Path | None,
    last: LastCheckpoint,
    run_dir: Path,
) -> None:
    """Fit, turning SIGTERM, a non-finite loss and out of memory into errors that name what to do next."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Lightning's handler saves, then stops
    try:
        with warnings.catch_warnings():
            # Lightning warns that the module's batch transfer wins over the DataModule's: it is meant to.
            warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")
            trainer.fit(module, datamodule=data, ckpt_path=str(checkpoint) if checkpoint else None)
    except SIGTERMException:
        saved = last.path if last.path.is_file() else None
        where = f"saved {saved} at step {last.saved_step}" if saved else "no checkpoint was saved yet"
        raise Terminated(
            f"terminated (SIGTERM): {where}; continue with `sam2tool resume {run_dir}`"
            if saved
            else f"terminated (SIGTERM) before the first checkpoint; {where}"
        ) from None
    except NonFiniteLoss as exc:
        saved = last.path if last.path.is_file() else None
        raise Sam2ToolError(
            f"{exc}; stopped. The last good checkpoint is "
            + (f"{saved} (step {last.saved_step})" if saved else "none (no checkpoint was saved yet)")
            + ". Lower optimizer.lr, keep trainer.gradient_clip_val set, or use trainer.precision=32-true"
        ) from exc
    except torch.OutOfMemoryError as exc:
        raise Sam2ToolError(out_of_memory_advice(module.settings, _device_memory(trainer))) from exc
    except RuntimeError as exc:
        if "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower():
            raise Sam2ToolError(out_of_memory_advice(module.settings, _device_memory(trainer))) from exc
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _device_memory(trainer: L.Trainer) -> int | None:
    """Total memory of the CUDA device the run trained on (None elsewhere)."""
    device = trainer.strategy.root_device
    return int(torch.cuda.get_device_properties(device).total_memory) if device.type == "cuda" else None


def _result(trainer: L.Trainer, run_dir: Path, callbacks: _Callbacks) -> TrainResult:
    """What the run produced: checkpoints, the best score, where it stopped, the curves."""
    best = callbacks.best
    best_score = float(best.best_model_score) if best is not None and best.best_model_score is not None else None
    log.info("Training finished at step %d; last checkpoint %s", trainer.global_step, callbacks.last.path)
    return TrainResult(
        run_dir=run_dir,
        last_checkpoint=callbacks.last.path,
        best_checkpoint=Path(best.best_model_path) if best is not None and best.best_model_path else None,
        best_score=best_score if best_score is None or math.isfinite(best_score) else None,
        global_step=trainer.global_step,
        epoch=trainer.current_epoch,
        metrics={k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
        stopped_early=callbacks.early_stopping is not None and callbacks.early_stopping.stopped_epoch > 0,
        curves=plot_curves(run_dir / METRICS_FILE, run_dir / CURVES_FILE) if _is_rank_zero() else None,
    )


def resume(
    target: Path,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    *,
    debug: bool = False,
) -> TrainResult:
    """Continue the run in ``target`` (a run folder or one of its checkpoints) exactly.

    The run's saved ``config.yaml`` gives the settings; ``overrides`` and ``flags`` may change
    those of :data:`RESUMABLE_CHANGES` (e.g. train longer). Environment variables are not read:
    the run continues with the settings it was started with.

    Raises:
        UsageError: Nothing to resume, or settings that differ from the checkpoint's.

    """
    run_dir, checkpoint = run_dir_of(target)
    saved_settings = load_settings(run_dir / CONFIG_FILE, environment=False)
    settings = load_settings(run_dir / CONFIG_FILE, overrides, flags, environment=False)
    meta = read_checkpoint_metadata(checkpoint)
    if meta is None:
        raise UsageError(
            f"{checkpoint} is not a sam2tool training checkpoint; resume continues runs of `sam2tool train`"
        )
    changed = override_keys(overrides)
    changed |= {key for key, value in (flags or {}).items() if value is not None}
    check_resume_config(meta["config"], saved_settings, set())
    check_resume_config(meta["config"], settings, changed)
    config_text = None
    if settings != saved_settings:
        config_text = render_settings_yaml(settings, f"sam2tool run {run_dir}: the resolved settings (resumed)")
    log.info("Resuming %s from %s", run_dir, checkpoint)
    return train(settings, debug=debug, run_dir=run_dir, checkpoint=checkpoint, config_text=config_text)
