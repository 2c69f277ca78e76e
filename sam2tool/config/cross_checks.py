"""Rules that involve several settings, written down once as a table.

Each rule names the dotted keys it reads and returns ``(dotted key, message)`` pairs for what is
wrong. The settings class runs every rule on valid settings; when some fields are invalid, the
loader still runs the rules whose keys are all valid, so that every problem is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sam2tool.config.registry import PACKAGED_BASE, get_spec, official_checkpoint_spec

Problems = list[tuple[str, str]]


@dataclass(frozen=True)
class CrossCheck:
    """A rule over several settings.

    Attributes:
        keys: The dotted keys the rule reads.
        rule: Takes ``{dotted key: validated value}`` and returns the problems found.

    """

    keys: tuple[str, ...]
    rule: Callable[[Mapping[str, Any]], Problems]


def _training_length(v: Mapping[str, Any]) -> Problems:
    if v["trainer.max_epochs"] is None and v["trainer.max_steps"] is None:
        return [("trainer.max_epochs", "set trainer.max_epochs or trainer.max_steps (both are null)")]
    return []


def _warmup_shorter_than_training(v: Mapping[str, Any]) -> Problems:
    warmup, max_steps = v["scheduler.warmup_steps"], v["trainer.max_steps"]
    if max_steps is not None and warmup >= max_steps:
        return [
            (
                "scheduler.warmup_steps",
                f"warmup of {warmup} steps is not shorter than trainer.max_steps={max_steps}; "
                "lower the warmup or train longer",
            )
        ]
    return []


def _half_precision_needs_a_gpu(v: Mapping[str, Any]) -> Problems:
    precision = v["trainer.precision"]
    if v["trainer.accelerator"] == "cpu" and precision in ("16-mixed", "16-true"):
        return [
            (
                "trainer.precision",
                f"{precision} does not run on the CPU; use bf16-mixed or 32-true with trainer.accelerator=cpu",
            )
        ]
    return []


def _checkpoint_matches_model(v: Mapping[str, Any]) -> Problems:
    checkpoint, version, size = v["model.checkpoint"], v["model.version"], v["model.size"]
    if checkpoint == "official" and get_spec(version, size).checkpoint_name is None:
        return [
            (
                "model.checkpoint",
                f"there is no official checkpoint for {version} {size}; use model.version=sam2.1 (the packaged "
                f"{PACKAGED_BASE} base), null (random weights) or the path of a checkpoint you trained",
            )
        ]
    spec = official_checkpoint_spec(checkpoint) if checkpoint else None
    if spec is None or (spec.version, spec.size) == (version, size):
        return []
    return [
        (
            "model.checkpoint",
            f"'{checkpoint}' is the {spec.display_name} checkpoint but the model is {version} {size}; "
            f"set model.version={spec.version} and model.size={spec.size}, or use checkpoint 'official'",
        )
    ]


def _some_loss(v: Mapping[str, Any]) -> Problems:
    if not any(v[key] for key in v):
        return [("loss.weight_mask", "all loss weights are 0: nothing would be learned")]
    return []


def _prompt_frames_fit(v: Mapping[str, Any]) -> Problems:
    length, init, correct = (
        v["dataset.video_clip_length"],
        v["model.num_init_cond_frames"],
        v["model.num_frames_to_correct"],
    )
    problems: Problems = []
    if length > 1 and init >= length:
        problems.append(
            (
                "model.num_init_cond_frames",
                f"{init} conditioning frames leave no frame to track in clips of dataset.video_clip_length={length}; "
                f"use at most {length - 1} or longer clips",
            )
        )
    if correct > length:
        problems.append(
            (
                "model.num_frames_to_correct",
                f"{correct} corrected frames do not fit in clips of dataset.video_clip_length={length}; "
                f"use at most {length}",
            )
        )
    if v["model.prob_to_use_pt_input"] > 0 and correct < init:
        problems.append(
            (
                "model.num_frames_to_correct",
                f"{correct} is fewer than model.num_init_cond_frames={init}: every conditioning frame prompted "
                "with clicks is also corrected; raise it or lower model.num_init_cond_frames",
            )
        )
    return problems


def _lora_frozen_base(v: Mapping[str, Any]) -> Problems:
    targets, trainable = v["model.lora_targets"], v["model.trainable_modules"]
    overlap = [entry for entry in trainable if any(entry == t or entry.startswith(t + ".") for t in targets)]
    if overlap:
        return [
            (
                "model.trainable_modules",
                f"{', '.join(overlap)} also has LoRA adapters (model.lora_targets), whose base weights stay "
                "frozen; remove it from one of the two lists",
            )
        ]
    return []


CROSS_CHECKS: tuple[CrossCheck, ...] = (
    CrossCheck(("model.checkpoint", "model.version", "model.size"), _checkpoint_matches_model),
    CrossCheck(("trainer.max_epochs", "trainer.max_steps"), _training_length),
    CrossCheck(("trainer.precision", "trainer.accelerator"), _half_precision_needs_a_gpu),
    CrossCheck(("scheduler.warmup_steps", "trainer.max_steps"), _warmup_shorter_than_training),
    CrossCheck(("loss.weight_mask", "loss.weight_dice", "loss.weight_iou", "loss.weight_class"), _some_loss),
    CrossCheck(
        (
            "dataset.video_clip_length",
            "model.num_init_cond_frames",
            "model.num_frames_to_correct",
            "model.prob_to_use_pt_input",
        ),
        _prompt_frames_fit,
    ),
    CrossCheck(("model.lora_targets", "model.trainable_modules"), _lora_frozen_base),
)


def cross_field_problems(value_of: Callable[[str], Any]) -> Problems:
    """Run every rule, reading values with ``value_of(dotted key)``."""
    problems: Problems = []
    for check in CROSS_CHECKS:
        problems += check.rule({key: value_of(key) for key in check.keys})
    return problems
