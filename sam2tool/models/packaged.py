"""The pretrained base model that ships inside the sam2tool package (SAM 2.1 micro).

Its weights are ``weights/<name>.safetensors`` beside this module, with a model card
``weights/<name>.json`` that records how it was made (``nox -s pretrain``), what it scores and the
SHA-256 of the weights. ``model.checkpoint: official`` for a packaged size resolves here, exactly as
it resolves to Meta's downloaded checkpoint for the other sizes; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sam2tool.config.registry import ModelSpec
from sam2tool.errors import CheckpointError

#: Folder of the packaged weights and model cards.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: What to do about a broken install.
REINSTALL = "pip install --force-reinstall sam2tool"


def packaged_paths(spec: ModelSpec) -> tuple[Path, Path]:
    """The weights file and the model card of the packaged base of ``spec``."""
    if not spec.packaged or spec.checkpoint_name is None:
        raise ValueError(f"{spec.display_name} has no packaged weights")
    return WEIGHTS_DIR / f"{spec.checkpoint_name}.safetensors", WEIGHTS_DIR / f"{spec.checkpoint_name}.json"


def packaged_card(spec: ModelSpec) -> dict[str, Any]:
    """The model card of the packaged base (plain JSON data).

    Raises:
        CheckpointError: The card is missing or not JSON (a broken install).

    """
    _, card = packaged_paths(spec)
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        what = "is missing" if not card.is_file() else f"is unreadable ({exc})"
        raise CheckpointError(
            f"the model card {card} of the packaged {spec.display_name} {what}; {REINSTALL}"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"the model card {card} of the packaged {spec.display_name} is not a JSON object; {REINSTALL}"
        )
    return data


def packaged_checkpoint(spec: ModelSpec) -> Path:
    """The packaged weights of ``spec``, checked against the SHA-256 in its model card.

    Raises:
        CheckpointError: The file is missing, or its contents are not what was packaged (a broken
            or partial install); the message names the file and how to reinstall.

    """
    weights, _ = packaged_paths(spec)
    if not weights.is_file():
        raise CheckpointError(f"the packaged {spec.display_name} weights {weights} are missing; {REINSTALL}")
    expected = packaged_card(spec).get("sha256")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != expected:
        raise CheckpointError(
            f"the packaged {spec.display_name} weights {weights} are corrupt (SHA-256 {digest[:12]}..., "
            f"the model card says {str(expected)[:12]}...); {REINSTALL}"
        )
    return weights
