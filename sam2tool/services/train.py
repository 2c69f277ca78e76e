"""``train`` and ``resume``: fine-tune SAM 2 with Lightning into a run folder.

The service checks the data, creates the run folder (``config.yaml``, ``training.log``), builds
the model, the DataModule and the Trainer from the settings, fits, and turns the ways training
can end (finished, early-stopped, SIGTERM, NaN loss, out of memory) into results or errors that
name the checkpoint to continue from.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam2tool.atomic import atomic_write_text
from sam2tool.config.problems import ConfigError
from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.errors import Sam2ToolError, Terminated, UsageError
from sam2tool.training.run_files import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    CURVES_FILE,
    LAST_CHECKPOINT,
    LOG_FILE,
    METRICS_FILE,
    RUN_DIR_ENV,
    new_run_dir,
)

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

OOM_ADVICE = (
    "out of memory while training; lower dataset.image_size, dataset.video_clip_length, "
    "dataset.max_num_objects or dataset.batch_size, set model.activation_checkpointing=true, or train "
    "LoRA adapters (model.lora_targets=[image_encoder,sam_mask_decoder] with model.trainable_modules "
    "limited to the rest)"
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
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _strategy(name: str) -> Any:
    """Lightning's strategy for ``trainer.strategy``.

    DDP finds unused parameters, as the official recipe does: a step prompted with masks never
    uses the point embeddings, one without corrections never uses some decoder tokens.
    """
    if name in ("ddp", "ddp_spawn"):
        from lightning.pytorch.strategies import DDPStrategy

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

    Args:
        settings: All settings.
        debug: A fast dev run (two batches, two validation videos), anomaly detection.
        run_dir: Write into this existing run folder (resume) instead of a new one.
        checkpoint: Lightning checkpoint to continue from.
        config_text: The resolved config.yaml to write (default: rendered from ``settings``).

    Raises:
        ConfigError: dataset.root is not set.
        DataError: No usable training clip or validation video.
        Terminated: SIGTERM; the checkpoint saved is named.
        Sam2ToolError: Out of memory, a non-finite loss, or a checkpoint that does not load.

    """
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from sam2tool.config.yaml_writer import render_settings_yaml
    from sam2tool.data.datamodule import ClipDataModule
    from sam2tool.training.lightning_module import NonFiniteLoss, SAM2LightningModule
    from sam2tool.training.run_files import (
        AtomicCheckpointIO,
        LastCheckpoint,
        MetricsCSV,
        attach_file_log,
        plot_curves,
    )
    from sam2tool.training.validation import VideoValidator, check_validation_videos

    if settings.dataset.root is None:
        raise ConfigError.single(
            "dataset.root", "is not set; point it at a folder written by `sam2tool prepare-data`", value=None
        )
    import warnings

    # Lightning warns that the module's batch transfer wins over the DataModule's: it is meant to.
    warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")
    s = settings
    L.seed_everything(s.trainer.seed, workers=True, verbose=False)
    data = ClipDataModule(s.dataset, seed=s.trainer.seed)
    data.setup("fit")
    validate = s.trainer.limit_val_batches != 0 and bool(data.val_videos)
    if validate:
        check_validation_videos(data.val_videos, s.dataset.val_split)
    elif s.trainer.limit_val_batches != 0:
        log.warning("splits/%s.txt lists no video: training without validation J&F", s.dataset.val_split)

    resuming = run_dir is not None
    run_dir = run_dir or new_run_dir(s.output.dir)
    # Processes Lightning launches for the other ranks re-run this command: they find the folder here.
    inherited = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    checkpoints = run_dir / CHECKPOINTS_DIR
    rank_zero = _is_rank_zero()
    if rank_zero:
        checkpoints.mkdir(parents=True, exist_ok=True)
        if not resuming or config_text is not None:
            text = config_text or render_settings_yaml(s, f"sam2tool run {run_dir}: the resolved settings")
            atomic_write_text(run_dir / CONFIG_FILE, text)
    detach_log = attach_file_log(run_dir / LOG_FILE, "DEBUG" if debug else s.logging.level) if rank_zero else None
    try:
        log.info("Run folder: %s", run_dir)
        validator = VideoValidator(s.model, s.dataset.image_size, run_dir / ".validation") if validate else None
        module = SAM2LightningModule(s, validator=validator)
        resume_step = None
        if checkpoint is not None:
            meta = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
            resume_step = int(meta.get("global_step", 0))
            del meta
        last = LastCheckpoint(checkpoints, s.output.checkpoint_every_n_steps)
        callbacks: list[Any] = [LearningRateMonitor(logging_interval="step")]
        best = None
        if validate and s.output.save_top_k != 0:
            best = ModelCheckpoint(
                dirpath=checkpoints,
                filename="best-step{step}",
                monitor="val/J&F",
                mode="max",
                save_top_k=s.output.save_top_k,
                auto_insert_metric_name=False,
                save_on_train_epoch_end=False,
            )
            callbacks.append(best)
        if validate and s.trainer.early_stopping_patience:
            callbacks.append(
                EarlyStopping(
                    monitor="val/J&F", mode="max", patience=s.trainer.early_stopping_patience, check_finite=False
                )
            )
        if s.logging.progress:
            from sam2tool.training.progress import TrainingProgressBar

            callbacks.append(TrainingProgressBar(leave=True))
        callbacks.append(last)  # after best and early stopping: last.ckpt holds their state after a validation
        loggers: list[Any] = [MetricsCSV(run_dir / METRICS_FILE, resume_step=resume_step if rank_zero else None)]
        if s.logging.wandb and not debug:
            from lightning.pytorch.loggers import WandbLogger

            loggers.append(
                WandbLogger(
                    project=s.logging.wandb_project,
                    entity=s.logging.wandb_entity,
                    name=s.logging.run_name or f"{run_dir.parent.name}/{run_dir.name}",
                    save_dir=str(run_dir),
                    id=_wandb_id(run_dir),
                    resume="allow",
                    mode=s.logging.wandb_mode,
                    config=s.model_dump(mode="json"),
                )
            )
        trainer = L.Trainer(
            accelerator=s.trainer.accelerator,
            devices=s.trainer.devices,
            strategy=_strategy(s.trainer.strategy),
            num_nodes=s.trainer.num_nodes,
            precision=s.trainer.precision,
            max_epochs=s.trainer.max_epochs if s.trainer.max_epochs is not None else -1,
            max_steps=s.trainer.max_steps if s.trainer.max_steps is not None else -1,
            accumulate_grad_batches=s.trainer.accumulate_grad_batches,
            gradient_clip_val=s.trainer.gradient_clip_val,
            val_check_interval=s.trainer.val_check_interval,
            limit_train_batches=s.trainer.limit_train_batches,
            limit_val_batches=s.trainer.limit_val_batches if validate else 0,
            log_every_n_steps=s.trainer.log_every_n_steps,
            deterministic=s.trainer.deterministic,
            detect_anomaly=s.trainer.detect_anomaly or debug,
            fast_dev_run=2 if debug else False,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
            callbacks=callbacks,
            logger=loggers,
            plugins=[AtomicCheckpointIO()],
            default_root_dir=str(run_dir),
            enable_progress_bar=s.logging.progress,
            enable_model_summary=debug,
        )
        previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Lightning's handler saves, then stops
        try:
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
            raise Sam2ToolError(OOM_ADVICE) from exc
        except RuntimeError as exc:
            if "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower():
                raise Sam2ToolError(OOM_ADVICE) from exc
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        curves = plot_curves(run_dir / METRICS_FILE, run_dir / CURVES_FILE) if rank_zero else None
        best_path = Path(best.best_model_path) if best is not None and best.best_model_path else None
        best_score = float(best.best_model_score) if best is not None and best.best_model_score is not None else None
        stopped_early = any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in callbacks)
        log.info("Training finished at step %d; last checkpoint %s", trainer.global_step, last.path)
        return TrainResult(
            run_dir,
            last.path,
            best_path,
            best_score if best_score is None or math.isfinite(best_score) else None,
            trainer.global_step,
            trainer.current_epoch,
            metrics,
            stopped_early,
            curves,
        )
    finally:
        if detach_log is not None:
            detach_log()
        if inherited is None:
            os.environ.pop(RUN_DIR_ENV, None)


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
    from sam2tool.config.loading import load_settings
    from sam2tool.config.sources import parse_overrides
    from sam2tool.config.yaml_writer import render_settings_yaml
    from sam2tool.models.checkpoints import read_checkpoint_metadata

    run_dir, checkpoint = run_dir_of(target)
    saved_settings = load_settings(run_dir / CONFIG_FILE, environment=False)
    settings = load_settings(run_dir / CONFIG_FILE, overrides, flags, environment=False)
    meta = read_checkpoint_metadata(checkpoint)
    if meta is None:
        raise UsageError(
            f"{checkpoint} is not a sam2tool training checkpoint; resume continues runs of `sam2tool train`"
        )
    changed = {".".join(path) for path in _leaf_paths(parse_overrides(overrides))}
    changed |= {key for key, value in (flags or {}).items() if value is not None}
    check_resume_config(meta["config"], saved_settings, set())
    check_resume_config(meta["config"], settings, changed)
    config_text = None
    if settings != saved_settings:
        config_text = render_settings_yaml(settings, f"sam2tool run {run_dir}: the resolved settings (resumed)")
    log.info("Resuming %s from %s", run_dir, checkpoint)
    return train(settings, debug=debug, run_dir=run_dir, checkpoint=checkpoint, config_text=config_text)


def _leaf_paths(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            paths += _leaf_paths(value, (*prefix, key))
        else:
            paths.append((*prefix, key))
    return paths
