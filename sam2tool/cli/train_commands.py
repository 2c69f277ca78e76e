"""``train`` and ``resume``: collect settings and flags, call the training service, report."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from sam2tool.cli.reporting import DebugOption, Overrides, choice_members, console, reporting_errors
from sam2tool.config.choices import Accelerator, Precision, Strategy

# The flags take exactly the values their settings accept (tests/cli/test_choices.py).
PrecisionName = Enum("PrecisionName", choice_members(Precision), type=str)  # type: ignore[misc]
AcceleratorName = Enum("AcceleratorName", choice_members(Accelerator), type=str)  # type: ignore[misc]
StrategyName = Enum("StrategyName", choice_members(Strategy), type=str)  # type: ignore[misc]


MaxEpochs = Annotated[int | None, typer.Option("--max-epochs", min=1, help="trainer.max_epochs.")]
MaxSteps = Annotated[int | None, typer.Option("--max-steps", min=1, help="trainer.max_steps.")]
NoWandb = Annotated[bool, typer.Option("--no-wandb", help="Do not log to Weights & Biases (logging.wandb=false).")]


def train(
    overrides: Overrides = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see init-config).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="optimizer.lr: peak learning rate.")] = None,
    max_epochs: MaxEpochs = None,
    max_steps: MaxSteps = None,
    no_wandb: NoWandb = False,
    accelerator: Annotated[
        AcceleratorName | None, typer.Option("--accelerator", help="trainer.accelerator: auto, cpu, cuda, gpu, mps.")
    ] = None,
    devices: Annotated[
        str | None, typer.Option("--devices", help="trainer.devices: auto, a count, -1 (all) or indices like 0,1.")
    ] = None,
    strategy: Annotated[
        StrategyName | None, typer.Option("--strategy", help="trainer.strategy: auto, ddp, ddp_spawn, fsdp, ...")
    ] = None,
    num_nodes: Annotated[int | None, typer.Option("--num-nodes", min=1, help="trainer.num_nodes.")] = None,
    precision: Annotated[
        PrecisionName | None, typer.Option("--precision", help="trainer.precision: 32-true, bf16-mixed, 16-mixed, ...")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="output.dir: parent of the run folder <date>/<time>/.")
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Fine-tune SAM 2 on prepared data; writes a run folder with checkpoints, metrics and curves.

    With --debug: a fast dev run (two training batches, two validation videos), anomaly
    detection, debug logs and tracebacks.
    """
    from sam2tool.config.loading import load_settings
    from sam2tool.services.train import train as train_service

    with reporting_errors(debug):
        flags: dict[str, Any] = {
            "optimizer.lr": lr,
            "trainer.max_epochs": max_epochs,
            "trainer.max_steps": max_steps,
            "logging.wandb": False if no_wandb else None,
            "trainer.accelerator": accelerator.value if accelerator else None,
            "trainer.devices": devices,
            "trainer.strategy": strategy.value if strategy else None,
            "trainer.num_nodes": num_nodes,
            "trainer.precision": precision.value if precision else None,
            "output.dir": str(output_dir) if output_dir is not None else None,
        }
        settings = load_settings(config, overrides or [], flags)
        result = train_service(settings, debug=debug)
        _report(result)


def resume(
    target: Annotated[Path, typer.Argument(help="A run folder (outputs/<date>/<time>) or a checkpoint in one.")],
    overrides: Overrides = None,
    max_epochs: MaxEpochs = None,
    max_steps: MaxSteps = None,
    no_wandb: NoWandb = False,
    debug: DebugOption = False,
) -> None:
    """Continue a run exactly from its config.yaml and latest (or the given) checkpoint, in its folder.

    key.path=value arguments change settings deliberately (e.g. trainer.max_epochs=60); settings
    that decide the model or what was learned cannot change.
    """
    from sam2tool.services.train import resume as resume_service

    with reporting_errors(debug):
        flags: dict[str, Any] = {
            "trainer.max_epochs": max_epochs,
            "trainer.max_steps": max_steps,
            "logging.wandb": False if no_wandb else None,
        }
        result = resume_service(target, overrides or [], flags, debug=debug)
        _report(result)


def _report(result: Any) -> None:
    lines = [f"Run folder: {result.run_dir}", f"Steps: {result.global_step} (epoch {result.epoch})"]
    loss = result.metrics.get("loss")
    if loss is not None and math.isfinite(loss):
        lines.append(f"Last training loss: {loss:.4f}")
    if "val/J&F" in result.metrics:
        m = result.metrics
        j, f = m.get("val/J", math.nan), m.get("val/F", math.nan)
        lines.append(f"Last validation: J&F {m['val/J&F']:.3f} (J {j:.3f}, F {f:.3f})")
    if result.best_checkpoint is not None:
        lines.append(f"Best checkpoint: {result.best_checkpoint} (J&F {result.best_score:.3f})")
    lines.append(f"Last checkpoint: {result.last_checkpoint}")
    if result.stopped_early:
        lines.append("Stopped early: validation J&F stopped improving.")
    if result.curves is not None:
        lines.append(f"Curves: {result.curves}")
    for line in lines:
        console.print(line, markup=False, highlight=False)
