"""Named starting points for ``sam2tool init-config --preset NAME``.

A preset is a set of values layered over the schema defaults. The files in ``configs/`` are
these presets written by ``init-config`` (a test keeps them identical).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A named set of settings.

    Attributes:
        summary: One line shown in ``--help`` and at the top of the written file.
        values: Nested mapping of the values that differ from the defaults.

    """

    summary: str
    values: dict[str, Any] = field(default_factory=dict)


def _official(size: str, summary: str) -> Preset:
    return Preset(summary, {"model": {"size": size, "version": "sam2.1", "checkpoint": "official"}})


PRESETS: dict[str, Preset] = {
    "tiny": _official("tiny", "fine-tune SAM 2.1 tiny (39 M parameters) from Meta's checkpoint"),
    "small": _official("small", "fine-tune SAM 2.1 small (46 M parameters) from Meta's checkpoint"),
    "base_plus": _official("base_plus", "fine-tune SAM 2.1 base_plus (81 M parameters) from Meta's checkpoint"),
    "large": _official("large", "fine-tune SAM 2.1 large (224 M parameters) from Meta's checkpoint"),
    # Fine-tuning the packaged base on the CPU: what the demo runs on a domain the base has not seen. Clips
    # of 8 frames, as in Meta's fine-tuning recipe (objects cross and hide each other within a clip); the
    # loss keeps the official weights, which the base was pretrained with.
    "micro": Preset(
        "fine-tune the micro SAM 2.1 base packaged with sam2tool (2.6 M parameters, pretrained at 128 px on "
        "generated videos) on the CPU, for demos and tests",
        {
            "model": {"size": "micro", "version": "sam2.1", "checkpoint": "official", "prob_to_use_pt_input": 0.0},
            "dataset": {
                "image_size": 128,
                "video_clip_length": 8,
                "max_num_objects": 3,
                "batch_size": 2,
                "num_workers": 1,
                "augment": False,
            },
            "trainer": {
                "max_epochs": None,
                "max_steps": 300,
                "accelerator": "cpu",
                "devices": 1,
                "precision": "32-true",
            },
            "optimizer": {"lr": 3e-4},
            "scheduler": {"warmup_steps": 20},
        },
    ),
    # How the packaged micro base was pretrained (nox -s pretrain): from random weights on generated
    # videos of 2-3 objects, batches of 4 clips of 6 frames with 3 objects each, so that telling
    # objects apart from memory is learned, not only following the most salient one. AdamW 5e-4:
    # at 1e-3 a loss spike (mask logits blowing up) could leave the object-score head wrong for the
    # rest of the run, and the same command gave bases of 0.71 or 0.22 validation J&F.
    "micro_pretrain": Preset(
        "pretrain the packaged micro base from random weights on generated videos (nox -s pretrain; "
        "about 40 minutes on 2 CPU cores)",
        {
            "model": {"size": "micro", "version": "sam2.1", "checkpoint": None, "prob_to_use_pt_input": 0.0},
            "dataset": {
                "image_size": 128,
                "video_clip_length": 6,
                "max_num_objects": 3,
                "batch_size": 4,
                "multiplier": 4,
                "num_workers": 1,
                "augment": False,
            },
            "trainer": {
                "max_epochs": None,
                "max_steps": 4000,
                "accelerator": "cpu",
                "devices": 1,
                "precision": "32-true",
                "limit_val_batches": 16,
                "log_every_n_steps": 25,
            },
            "optimizer": {"lr": 5e-4},
            "scheduler": {"warmup_steps": 200},
        },
    ),
    "mose_finetune": Preset(
        "Meta's SAM 2.1 base_plus MOSE fine-tune recipe (1024 px, 8 frames, 3 objects, AdamW 5e-6, "
        "vision 3e-6, layer decay 0.9, weight decay 0.1, grad clip 0.1, bf16)",
        {
            "model": {"size": "base_plus", "version": "sam2.1", "checkpoint": "official", "drop_path_rate": 0.1},
            "dataset": {
                "image_size": 1024,
                "video_clip_length": 8,
                "max_num_objects": 3,
                "batch_size": 1,
                "multiplier": 2,
            },
            "trainer": {"max_epochs": 40, "precision": "bf16-mixed", "gradient_clip_val": 0.1, "seed": 123},
            "optimizer": {"lr": 5.0e-6, "vision_lr": 3.0e-6, "weight_decay": 0.1, "layer_decay": 0.9},
            "scheduler": {"name": "cosine", "warmup_steps": 0, "min_lr_ratio": 0.1},
            "loss": {"weight_mask": 20.0, "weight_dice": 1.0, "weight_iou": 1.0, "weight_class": 1.0},
        },
    ),
}

DEFAULT_PRESET = "tiny"
