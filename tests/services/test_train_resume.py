"""Exact resume after SIGTERM and SIGKILL, DDP on two CPU processes, Weights & Biases offline.

Every run is a real `sam2tool` process, stopped with real signals.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sam2tool.config.loading import load_settings
from sam2tool.config.yaml_writer import render_settings_yaml
from tests.conftest import BASE_SIZE, REPO, micro_run_settings, prepare_synthetic
from tests.conftest import RUN_SIZE as SIZE

STEPS = 8


def write_config(path: Path, data: Path, output: Path, *extra: str) -> Path:
    settings = micro_run_settings(
        data,
        output,
        "model.drop_path_rate=0.2",  # drop-path, augmentation and prompt sampling all on
        "dataset.multiplier=8",  # 16 batches per epoch: every checkpoint is mid-epoch
        f"trainer.max_steps={STEPS}",
        "trainer.val_check_interval=4",
        "scheduler.warmup_steps=2",
        "logging.level=DEBUG",
        *extra,
    )
    path.write_text(render_settings_yaml(settings, "test run"))
    return path


def sam2tool(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith(("SAM2TOOL_", "_SAM2TOOL_"))}
    environment.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})})
    return subprocess.Popen(
        [sys.executable, "-m", "sam2tool", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        cwd=REPO,
    )


def finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def only_run(output: Path) -> Path:
    (run,) = output.glob("*/*")
    return run


def train_to_the_end(folder: Path, data: Path, *extra: str, env: dict[str, str] | None = None) -> Path:
    """Train with ``folder/config.yaml`` (``write_config`` with ``extra``) to the end; return its run folder."""
    config = write_config(folder / "config.yaml", data, folder / "runs", *extra)
    code, output = finish(sam2tool("train", "--config", str(config), env=env))
    assert code == 0, output
    return only_run(folder / "runs")


def train_until(folder: Path, data: Path, step: int) -> tuple[subprocess.Popen[str], Path]:
    """Start training with ``folder/config.yaml`` (``write_config``); return the process and its run folder.

    It returns once the run has checkpointed ``step``, with the process still running.
    """
    config = write_config(folder / "config.yaml", data, folder / "runs")
    process = sam2tool("train", "--config", str(config))
    return process, wait_for_step(folder / "runs", step, process)


def wait_for_step(run_parent: Path, step: int, process: subprocess.Popen[str], timeout: float = 240) -> Path:
    """Wait until the run has saved last.ckpt at ``step`` (its training.log says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be interrupted"
        for log in run_parent.glob("*/*/training.log"):
            if f"last.ckpt at step {step}" in log.read_text():
                return log.parent
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step {step} within {timeout} s")


def final_state(run: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == STEPS
    state = dict(checkpoint["state_dict"])
    for index, entry in enumerate(checkpoint["optimizer_states"][0]["state"].values()):
        for key, value in entry.items():
            state[f"optimizer.{index}.{key}"] = value
    return state


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_synthetic(
        tmp_path_factory.mktemp("resume") / "data", videos=4, frames=6, size=SIZE, val_fraction=0.5
    )


@pytest.fixture(scope="module")
def uninterrupted(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    return final_state(train_to_the_end(tmp_path_factory.mktemp("uninterrupted"), data))


def assert_identical(resumed: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert resumed.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(resumed[k], expected[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_sigterm_saves_exits_143_and_resume_is_bit_identical(
    data: Path, tmp_path: Path, uninterrupted: dict[str, torch.Tensor]
) -> None:
    process, run = train_until(tmp_path, data, 3)
    process.send_signal(signal.SIGTERM)
    code, output = finish(process)
    assert code == 143, output
    assert "terminated (SIGTERM): saved" in output and f"sam2tool resume {run}" in output
    stopped_at = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert 3 <= stopped_at <= 5 < STEPS  # within one step of the signal (plus the step in flight)

    code, output = finish(sam2tool("resume", str(run)))
    assert code == 0, output
    assert_identical(final_state(run), uninterrupted)
    with (run / "metrics.csv").open(newline="") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh) if r["loss"]]
    assert steps == list(range(STEPS))  # rows logged after the checkpoint were not duplicated
    assert_tensorboard_continues(run, STEPS)


def assert_tensorboard_continues(run: Path, steps: int) -> None:
    """The resumed run wrote to the same TensorBoard folder; what was logged after the checkpoint is hidden."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = run / "tensorboard"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2 and not list(folder.glob("version_*"))
    events = EventAccumulator(str(folder))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == list(range(steps))
    with (run / "metrics.csv").open(newline="") as fh:
        validations = [int(r["step"]) for r in csv.DictReader(fh) if r["val/J&F"]]
    assert validations and [e.step for e in events.Scalars("val/J&F")] == validations  # as metrics.csv: none twice


def test_sigkill_leaves_a_loadable_checkpoint_and_resume_is_bit_identical(
    data: Path, tmp_path: Path, uninterrupted: dict[str, torch.Tensor]
) -> None:
    process, run = train_until(tmp_path, data, 2)
    time.sleep(0.3)  # somewhere in the next step, possibly while a checkpoint is being written
    process.kill()
    finish(process)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert 2 <= checkpoint["global_step"] < STEPS
    code, output = finish(sam2tool("resume", str(run / "checkpoints" / "last.ckpt")))
    assert code == 0, output
    assert_identical(final_state(run), uninterrupted)


def test_resume_can_train_longer_but_not_change_the_recipe(data: Path, tmp_path: Path) -> None:
    run = train_to_the_end(
        tmp_path, data, "trainer.max_steps=2", "trainer.limit_val_batches=0", "scheduler.warmup_steps=1"
    )
    code, output = finish(sam2tool("resume", str(run), "optimizer.lr=1"))
    assert code == 2 and "optimizer.lr cannot change on resume" in output
    code, output = finish(sam2tool("resume", str(run), "--max-steps", "3"))
    assert code == 0, output
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert load_settings(run / "config.yaml").trainer.max_steps == 3


def test_resume_from_the_base_keeps_choosing_the_best_checkpoint_by_validation_jf(
    base_data: Path, tmp_path: Path
) -> None:
    # The packaged base tracks, so validation J&F differs from one validation to the next and the
    # best checkpoint is a real choice that the resumed run must continue (random weights score 0).
    run = train_to_the_end(
        tmp_path,
        base_data,
        "model.checkpoint=official",
        "model.drop_path_rate=0.0",
        f"dataset.image_size={BASE_SIZE}",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "optimizer.lr=1e-3",
    )
    # last.ckpt is written after the best checkpoint of its validation, so the state a resume
    # continues from names the best file that is there (not the one of the validation before)
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["callbacks"]
    (best_state,) = [v for k, v in state.items() if k.startswith("ModelCheckpoint")]
    assert [Path(p).name for p in best_state["best_k_models"]] == [p.name for p in run.glob("checkpoints/best-*")]
    code, output = finish(sam2tool("resume", str(run), "--max-steps", "8"))
    assert code == 0, output
    with (run / "metrics.csv").open(newline="") as fh:
        scores = [float(r["val/J&F"]) for r in csv.DictReader(fh) if r["val/J&F"]]
    assert len(scores) == 4 and min(scores) > 0.05  # two validations before the resume, two after
    best = [p.name for p in (run / "checkpoints").glob("best-*.ckpt")]
    assert len(best) == 1, (best, scores)  # save_top_k=1 across the resume: the earlier best was replaced or kept
    assert f"(J&F {max(scores):.3f})" in output
    saved = torch.load(run / "checkpoints" / best[0], map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2 * (scores.index(max(scores)) + 1)


def test_ddp_on_two_cpu_processes(data: Path, tmp_path: Path) -> None:
    run = train_to_the_end(  # one run folder for both ranks
        tmp_path,
        data,
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "dataset.multiplier=4",
    )
    with (run / "metrics.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    losses = [float(r["loss"]) for r in table if r["loss"]]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert [r for r in table if r["val/J&F"]]
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("last")) == ["last.ckpt"]
    assert "Run folder" in (run / "training.log").read_text()


def test_wandb_offline_run_is_written_without_network(data: Path, tmp_path: Path) -> None:
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "HOME": str(tmp_path)}
    run = train_to_the_end(
        tmp_path,
        data,
        "trainer.max_steps=2",
        "scheduler.warmup_steps=1",
        "trainer.limit_val_batches=0",
        "logging.wandb=true",
        "logging.wandb_mode=offline",
        env=env,
    )
    (offline,) = (run / "wandb").glob("offline-run-*")
    assert list(offline.glob("*.wandb"))
    code, output = finish(sam2tool("train", "--config", str(tmp_path / "config.yaml"), "--no-wandb", env=env))
    assert code == 0, output
    assert not any((p / "wandb").exists() for p in (tmp_path / "runs").glob("*/*") if p != run)
