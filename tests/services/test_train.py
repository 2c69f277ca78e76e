"""`sam2tool train` on the micro model: the run folder, checkpoints, validation, errors."""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.config.loading import load_settings
from sam2tool.config.registry import get_spec
from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.config.yaml_writer import render_settings_yaml
from sam2tool.errors import DataError, UsageError
from sam2tool.models.build import build_model
from sam2tool.models.checkpoints import load_into, read_state_dict
from sam2tool.services.train import TrainResult, _loggers, check_resume_config, run_dir_of, train
from tests.conftest import RUN_SIZE as SIZE
from tests.conftest import micro_run_settings, prepare_synthetic


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("train") / "data", videos=4, frames=6, size=SIZE, val_fraction=0.5)


@pytest.fixture(scope="module")
def finished(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Sam2ToolSettings]:
    settings = micro_run_settings(data, tmp_path_factory.mktemp("runs"))
    return train(settings), settings


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_run_folder_holds_config_log_metrics_checkpoints_and_curves(
    finished: tuple[TrainResult, Sam2ToolSettings],
) -> None:
    result, settings = finished
    run = result.run_dir
    assert run.parent.parent == settings.output.dir and len(run.parent.name) == 10  # <dir>/YYYY-MM-DD/HH-MM-SS
    assert load_settings(run / "config.yaml") == settings
    assert "Run folder" in (run / "training.log").read_text()
    assert result.global_step == 4
    table = rows(run / "metrics.csv")
    losses = [r for r in table if r["loss"]]
    assert [int(r["step"]) for r in losses] == [0, 1, 2, 3]
    for r in losses:
        for key in ("loss", "loss_bce", "loss_dice", "loss_iou", "loss_class", "learning_rate"):
            assert math.isfinite(float(r[key])), (key, r)
    validations = [r for r in table if r["val/J&F"]]
    assert len(validations) == 2  # every 2 steps
    for r in validations:
        assert 0.0 <= float(r["val/J&F"]) <= 1.0
        assert float(r["val/J&F"]) == pytest.approx((float(r["val/J"]) + float(r["val/F"])) / 2)
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert result.last_checkpoint == run / "checkpoints" / "last.ckpt"
    assert not list(run.rglob("*.tmp"))


def test_tensorboard_logs_losses_learning_rates_jf_and_overlays_into_the_run_folder(
    finished: tuple[TrainResult, Sam2ToolSettings],
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, settings = finished
    folder = result.run_dir / "tensorboard"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # no version_N subfolder
    events = EventAccumulator(str(folder), size_guidance={"images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    losses = {"loss", "loss_bce", "loss_dice", "loss_iou", "loss_class", "learning_rate"}
    assert losses | {"val/J", "val/F", "val/J&F"} <= scalars
    assert any(tag.startswith("lr-") for tag in scalars)  # every parameter group's rate (LearningRateMonitor)
    assert [e.step for e in events.Scalars("loss")] == [0, 1, 2, 3]
    csv_scores = [float(r["val/J&F"]) for r in rows(result.run_dir / "metrics.csv") if r["val/J&F"]]
    assert [e.value for e in events.Scalars("val/J&F")] == pytest.approx(csv_scores)
    videos = (settings.dataset.root / "splits" / "val.txt").read_text().split()
    assert sorted(events.Tags()["images"]) == sorted(f"val/overlay/{video}" for video in videos)
    for video in videos:
        pictures = events.Images(f"val/overlay/{video}")
        assert len(pictures) == 2  # one per validation
        picture = Image.open(io.BytesIO(pictures[-1].encoded_image_string))
        assert picture.size == (3 * SIZE + 2 * 4, 2 * SIZE)  # three frames; predicted above ground truth


def test_a_resumed_run_continues_the_tensorboard_folder_and_hides_what_came_after_its_checkpoint(
    tmp_path: Path,
) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings = Sam2ToolSettings(logging={"tensorboard": True})

    def log(resume_step: int | None, steps: range, lost: bool = False) -> None:
        (logger,) = [lg for lg in _loggers(settings, tmp_path, resume_step, False) if isinstance(lg, TensorBoardLogger)]
        for step in steps:
            logger.log_metrics({"loss": step + (0.5 if lost and step >= 3 else 0.0)}, step)
        logger.finalize("success")

    log(None, range(6), lost=True)  # the checkpoint was at global step 3 (losses of steps 0..2); 3..5 were lost
    log(3, range(3, 8))
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(s, float(s)) for s in range(8)]
    assert not [lg for lg in _loggers(settings, tmp_path, None, True) if isinstance(lg, TensorBoardLogger)]  # debug


def test_last_checkpoint_loads_safely_into_the_plain_model(finished: tuple[TrainResult, Sam2ToolSettings]) -> None:
    result, settings = finished
    checkpoint = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 4
    meta = checkpoint["sam2tool"]
    assert meta["model"] == {"version": "sam2.1", "size": "micro", "image_size": SIZE}
    assert meta["config"] == settings.model_dump(mode="json")
    state = read_state_dict(result.last_checkpoint)
    model = build_model(settings.model, SIZE, load_weights=False).model
    load_into(model, state, result.last_checkpoint, get_spec("sam2.1", "micro"))
    trained = {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items()}
    for key, value in model.state_dict().items():
        assert torch.equal(value, trained[key])


def test_training_changes_the_weights(finished: tuple[TrainResult, Sam2ToolSettings]) -> None:
    result, settings = finished
    torch.manual_seed(settings.trainer.seed)
    initial = build_model(settings.model, SIZE, load_weights=False).model.state_dict()
    trained = read_state_dict(result.last_checkpoint)
    changed = [k for k, v in initial.items() if not torch.equal(v, trained[k])]
    assert len(changed) > len(initial) // 2


def test_frozen_modules_do_not_change(data: Path, tmp_path: Path) -> None:
    settings = micro_run_settings(
        data,
        tmp_path,
        "model.trainable_modules=[sam_mask_decoder]",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=0",
    )
    torch.manual_seed(settings.trainer.seed)
    import lightning as L

    L.seed_everything(settings.trainer.seed, verbose=False)
    initial = build_model(settings.model, SIZE, load_weights=False).model.state_dict()
    result = train(settings)
    trained = read_state_dict(result.last_checkpoint)
    for key, value in initial.items():
        if key.startswith("sam_mask_decoder."):
            continue
        assert torch.equal(value, trained[key]), key
    assert any(not torch.equal(initial[k], trained[k]) for k in initial if k.startswith("sam_mask_decoder."))


def test_lora_run_saves_merged_weights_the_plain_model_loads(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    settings = micro_run_settings(
        data,
        tmp_path,
        "model.lora_targets=[image_encoder,sam_mask_decoder]",
        "model.trainable_modules=[memory_attention]",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=1",
        "optimizer.lr=1e-2",
    )
    result = train(settings)
    state = read_state_dict(result.last_checkpoint)
    assert not any("lora_" in k or "base_layer" in k for k in state)
    model = build_model(settings.model.model_copy(update={"lora_targets": []}), SIZE, load_weights=False).model
    load_into(model, state, result.last_checkpoint, get_spec("sam2.1", "micro"))


def test_cli_train_prints_the_run_and_exit_code_0(data: Path, tmp_path: Path) -> None:
    command = [
        "train",
        "model.size=micro",
        "model.checkpoint=null",
        f"dataset.root={data}",
        f"dataset.image_size={SIZE}",
        "dataset.video_clip_length=3",
        "dataset.num_workers=0",
        "trainer.limit_val_batches=0",
        "logging.progress=false",
        "--max-steps",
        "1",
        "--accelerator",
        "cpu",
        "--devices",
        "1",
        "--output-dir",
        str(tmp_path / "runs"),
        "--no-wandb",
    ]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "Last checkpoint:" in result.output
    (run,) = (tmp_path / "runs").glob("*/*")
    assert (run / "checkpoints" / "last.ckpt").is_file()


# ------------------------------------------------------------------------------------- errors


def test_empty_training_split_is_refused(data: Path, tmp_path: Path) -> None:
    (data / "splits" / "empty.txt").write_text("")
    settings = micro_run_settings(data, tmp_path, "dataset.train_split=empty")
    with pytest.raises(DataError, match=r"splits/empty\.txt lists no video"):
        train(settings)


def test_validation_videos_without_annotations_are_refused(tmp_path: Path) -> None:
    data = prepare_synthetic(tmp_path / "data", videos=3, frames=4, size=SIZE, val_fraction=0.4)
    import json

    manifest = json.loads((data / "manifest.json").read_text())
    (val,) = (data / "splits" / "val.txt").read_text().split()
    manifest["videos"][val]["annotated"] = []
    (data / "manifest.json").write_text(json.dumps(manifest))
    settings = micro_run_settings(data, tmp_path / "runs")
    with pytest.raises(DataError, match=f"without annotated frames \\({val}\\)"):
        train(settings)


def test_missing_dataset_root_is_a_config_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", "model.size=micro", "model.checkpoint=null", "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "dataset.root" in result.output


def test_tensorboard_missing_is_a_config_error_before_training(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("tensorboard", "tensorboardX"):
        monkeypatch.setitem(sys.modules, name, None)  # not importable: find_spec answers None
    config = tmp_path / "config.yaml"
    config.write_text(render_settings_yaml(micro_run_settings(data, tmp_path / "runs"), "test"))
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "logging.tensorboard" in result.output and "pip install tensorboard" in result.output
    assert "logging.tensorboard=false" in result.output
    assert not (tmp_path / "runs").exists()  # refused before the run folder was made


def test_resume_of_a_missing_path_or_a_folder_without_checkpoints(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["resume", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  size: micro\n  checkpoint: null\n")
    empty = CliRunner().invoke(app, ["resume", str(run)])
    assert empty.exit_code == 2 and "has no checkpoint" in empty.output
    with pytest.raises(UsageError, match="not a sam2tool run folder"):
        run_dir_of(tmp_path)


def test_resume_refuses_other_models_and_silent_config_changes(data: Path, tmp_path: Path) -> None:
    saved = micro_run_settings(data, tmp_path).model_dump(mode="json")
    other_size = micro_run_settings(data, tmp_path, "model.size=tiny", "model.checkpoint=null")
    with pytest.raises(UsageError, match=r"different model \(model\.size: checkpoint 'micro', now 'tiny'\)"):
        check_resume_config(saved, other_size, {"model.size"})
    edited = micro_run_settings(data, tmp_path, "optimizer.lr=5e-4")
    with pytest.raises(UsageError, match=r"config\.yaml no longer matches the checkpoint \(optimizer\.lr"):
        check_resume_config(saved, edited, set())
    with pytest.raises(UsageError, match=r"optimizer\.lr cannot change on resume"):
        check_resume_config(saved, edited, {"optimizer.lr"})
    longer = micro_run_settings(data, tmp_path, "trainer.max_steps=10")
    check_resume_config(saved, longer, {"trainer.max_steps"})  # deliberate: allowed


def test_non_finite_loss_stops_with_the_step_and_last_checkpoint(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sam2tool.errors import Sam2ToolError
    from sam2tool.training.loss import SAM2Loss

    original = SAM2Loss.forward
    calls = {"n": 0}

    def poisoned(self: SAM2Loss, *args: Any) -> dict[str, torch.Tensor]:
        terms = original(self, *args)
        calls["n"] += 1
        if calls["n"] == 3:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(SAM2Loss, "forward", poisoned)
    settings = micro_run_settings(data, tmp_path, "trainer.limit_val_batches=0")
    with pytest.raises(Sam2ToolError, match=r"not finite at step 2 .*last good checkpoint is .*last\.ckpt \(step 2\)"):
        train(settings)


def test_out_of_memory_gives_advice(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sam2tool.errors import Sam2ToolError
    from sam2tool.training import lightning_module

    def exhausted(*args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(lightning_module, "forward_clip", exhausted)
    settings = micro_run_settings(data, tmp_path, "trainer.limit_val_batches=0")
    with pytest.raises(
        Sam2ToolError,
        match=r"out of memory while training sam2\.1 micro at 64 px, 3-frame clips, up to 2 objects, batch 1; "
        r"set model\.activation_checkpointing=true; if that is not enough, then model\.lora_targets=\[image_encoder\]",
    ):
        train(settings)


def test_run_folders_are_dated_unique_and_shared_by_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from sam2tool.training.run_files import RUN_DIR_ENV, new_run_dir

    for name in (RUN_DIR_ENV, "SLURM_JOB_ID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    now = dt.datetime(2026, 11, 25, 14, 3, 12)
    first = new_run_dir(tmp_path, now)
    assert first == tmp_path / "2026-11-25" / "14-03-12"
    first.mkdir(parents=True)
    assert new_run_dir(tmp_path, now) == tmp_path / "2026-11-25" / "14-03-12-1"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    assert new_run_dir(tmp_path, now) == tmp_path / "2026-11-25" / "torchrun-abc"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert new_run_dir(tmp_path, now) == tmp_path / "2026-11-25" / "slurm-4242"
    monkeypatch.setenv(RUN_DIR_ENV, str(first))
    assert new_run_dir(tmp_path, now) == first  # processes Lightning launches for other ranks


def test_early_stopping_ends_the_run_when_j_and_f_stalls(data: Path, tmp_path: Path) -> None:
    settings = micro_run_settings(
        data,
        tmp_path,
        "trainer.max_steps=40",
        "trainer.val_check_interval=1",
        "trainer.early_stopping_patience=1",
        "optimizer.lr=1e-9",  # nothing changes: J&F cannot improve after the first validation
        "scheduler.name=constant",
        "model.drop_path_rate=0.0",
    )
    result = train(settings)
    assert result.stopped_early
    assert result.global_step < 40


def test_random_weights_before_training_are_what_evaluate_and_predict_use(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`evaluate --baseline` with model.checkpoint null scores exactly the model a run starts from."""
    from sam2tool.models.tracking import load_predictor
    from sam2tool.training import lightning_module

    initial: dict[str, torch.Tensor] = {}

    def recording_build(*args: Any, **kwargs: Any) -> Any:
        built = build_model(*args, **kwargs)
        initial.update({k: v.clone() for k, v in built.model.state_dict().items()})
        return built

    monkeypatch.setattr(lightning_module, "build_model", recording_build)
    settings = micro_run_settings(
        data, tmp_path, "trainer.max_steps=2", "trainer.limit_val_batches=0", "trainer.seed=5"
    )
    train(settings)
    predictor = load_predictor(settings, SIZE, "cpu").state_dict()
    assert initial.keys() == predictor.keys()
    assert all(torch.equal(initial[k], predictor[k]) for k in initial)
    other = load_predictor(micro_run_settings(data, tmp_path, "trainer.seed=6"), SIZE, "cpu").state_dict()
    assert not all(torch.equal(initial[k], other[k]) for k in initial)


def test_every_trainer_setting_reaches_the_lightning_trainer(tmp_path: Path) -> None:
    import inspect

    import lightning as L

    from sam2tool.config.schema import TrainerSettings
    from sam2tool.services.train import TRAINER_ARGUMENTS, _trainer_arguments

    # seed and early stopping are used by sam2tool itself; the others are Trainer arguments (some mapped).
    mapped = {"strategy", "max_epochs", "max_steps", "limit_val_batches", "detect_anomaly"}
    assert set(TrainerSettings.model_fields) == {*TRAINER_ARGUMENTS, *mapped, "seed", "early_stopping_patience"}
    settings = micro_run_settings(
        tmp_path,
        tmp_path,
        "trainer.accumulate_grad_batches=3",
        "trainer.gradient_clip_val=0.5",
        "trainer.log_every_n_steps=7",
        "trainer.limit_train_batches=5",
    )
    arguments = _trainer_arguments(settings, validate=False, debug=False)
    assert set(arguments) <= set(inspect.signature(L.Trainer.__init__).parameters)
    trainer = L.Trainer(**arguments, logger=False, enable_checkpointing=False)
    assert (trainer.max_steps, trainer.max_epochs, trainer.accumulate_grad_batches) == (4, -1, 3)
    assert (trainer.gradient_clip_val, trainer.log_every_n_steps, trainer.limit_train_batches) == (0.5, 7, 5)
    assert trainer.limit_val_batches == 0  # nothing to validate on
