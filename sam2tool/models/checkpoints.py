"""Reading and writing SAM 2 weights: safely, strictly, with messages that say what is wrong.

Checkpoints are always loaded with ``torch.load(..., weights_only=True)``: a file that needs to
run Python code to unpickle is refused, never executed. ``.safetensors`` files (the packaged base,
``sam2tool export --format safetensors``) hold tensors only and are read with safetensors. Three
layouts of PyTorch files are understood:

- Meta's official format ``{"model": state_dict}`` (also what ``sam2tool export`` writes),
- a sam2tool/Lightning checkpoint ``{"state_dict": {"model.<key>": tensor, ...}, ...}``,
- a bare state dict ``{key: tensor}``.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sam2tool.atomic import atomic_path
from sam2tool.config.registry import ModelSpec, size_from_trunk
from sam2tool.errors import CheckpointError

#: The attribute under which sam2tool's LightningModule holds the SAM 2 model.
LIGHTNING_PREFIX = "model."
#: sam2tool's own entry in a training checkpoint (plain data: settings, model, LoRA scale).
CHECKPOINT_META_KEY = "sam2tool"
#: The file every export folder has (what ``--force`` looks for before replacing a folder).
MODEL_CARD = "model_card.json"
#: How peft names the parts of an adapted linear layer.
BASE_LAYER, LORA_A, LORA_B = ".base_layer.", ".lora_A.default.", ".lora_B.default."

_TRUNK_PATCH_KEY = "image_encoder.trunk.patch_embed.proj.weight"
_TRUNK_BLOCK_PREFIX = "image_encoder.trunk.blocks."
_SAM21_ONLY_KEY = "no_obj_embed_spatial"

StateDict = dict[str, torch.Tensor]


def read_state_dict(path: Path) -> StateDict:
    """Read the SAM 2 state dict from a checkpoint file, without running code from it.

    Raises:
        CheckpointError: The file is missing, unreadable, not a PyTorch checkpoint, holds
            Python objects other than tensors and plain containers, or has no SAM 2 weights.

    """
    path = _existing_file(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. "Detected pickle protocol 4"
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _refused_objects(path, str(exc)):
            raise CheckpointError(_holds_more_than_weights(path, str(exc))) from None
        raise CheckpointError(_not_a_checkpoint(path)) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # the weights-only unpickler fails in many ways on garbage
        raise CheckpointError(_not_a_checkpoint(path, exc)) from None
    return _extract_state_dict(obj, path)


def _read_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors file; it may be truncated or corrupt ({exc})"
        ) from None
    return _extract_state_dict(state, path)


def _existing_file(path: Path) -> Path:
    """``path`` as a Path; CheckpointError when it is missing or a folder."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}; check the path (model.checkpoint, --checkpoint, CHECKPOINT)")
    return path


def _refused_objects(path: Path, error: str) -> bool:
    """Whether the weights-only unpickler refused objects (not garbage): a global, or a plain pickle stream."""
    if "GLOBAL" in error or "Unsupported global" in error:
        return True
    with open(path, "rb") as fh:
        is_pickle = fh.read(1) == b"\x80"  # PROTO: a pickle not written by torch.save
    return is_pickle and error.startswith("Weights only load failed")


def _holds_more_than_weights(path: Path, error: str) -> str:
    """Why a file the weights-only unpickler refused was not loaded (never PyTorch's hint to load it unsafely)."""
    found = re.search(r"GLOBAL ([\w.]+)", error)
    what = f" (such as {found.group(1)})" if found else ""
    return (
        f"refused to load {path}: it holds Python objects other than tensors and plain containers{what}, that is "
        "more than weights, and unpickling them could run code. sam2tool loads only weights, so nothing in the file "
        "was run; if you trust it, re-save its weights with torch.save({'model': state_dict}, path)"
    )


def _not_a_checkpoint(path: Path, exc: BaseException | None = None) -> str:
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    if head[:1] == b"<":
        return f"{path} is not a PyTorch checkpoint: it is an HTML/XML page (a failed download?); delete it"
    if head[:1] in (b"{", b"["):
        return f"{path} is not a PyTorch checkpoint: it is a JSON/text file"
    detail = f" ({str(exc).splitlines()[0]})" if exc is not None and str(exc) else ""
    return f"{path} is not a readable PyTorch checkpoint; it may be truncated or corrupt{detail}"


def _extract_state_dict(obj: object, path: Path) -> StateDict:
    state: object
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        state = obj["model"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        lightning_state = obj["state_dict"]
        state = {
            key[len(LIGHTNING_PREFIX) :]: value
            for key, value in lightning_state.items()
            if key.startswith(LIGHTNING_PREFIX)
        }
        meta = obj.get(CHECKPOINT_META_KEY)
        lora = meta.get("lora") if isinstance(meta, Mapping) else None
        if state and any(LORA_A in key for key in state):
            if not isinstance(lora, Mapping):
                raise CheckpointError(f"{path} holds LoRA adapters but not their scale (no sam2tool.lora entry)")
            state = merge_lora_keys(state, float(lora["alpha"]) / float(lora["rank"]))
        if not state:
            raise CheckpointError(
                f"{path} is a Lightning checkpoint without SAM 2 weights (no keys start with "
                f"'{LIGHTNING_PREFIX}'); was it written by sam2tool train?"
            )
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    else:
        keys = ", ".join(map(repr, list(obj)[:5])) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{path} is not a SAM 2 checkpoint: expected {{'model': state_dict}} (official), "
            f"{{'state_dict': ...}} (sam2tool/Lightning) or a state dict, found {keys}"
        )
    assert isinstance(state, Mapping)
    result: StateDict = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path} is not a SAM 2 checkpoint: entry {key!r} is not a tensor")
        result[key] = value
    return result


def merge_lora_keys(state: Mapping[str, torch.Tensor], scale: float) -> StateDict:
    """The state dict without LoRA adapters: each adapted weight becomes ``W + scale * B @ A``.

    peft stores an adapted ``nn.Linear`` as ``<name>.base_layer.{weight,bias}``,
    ``<name>.lora_A.default.weight`` (r, in) and ``<name>.lora_B.default.weight`` (out, r); the
    result has the plain ``<name>.weight`` / ``<name>.bias`` keys the official model expects.
    """
    merged: StateDict = {}
    for key, value in state.items():
        if LORA_A in key or LORA_B in key:
            continue
        if BASE_LAYER in key:
            name, _, leaf = key.partition(BASE_LAYER)
            if leaf == "weight" and f"{name}{LORA_A}weight" in state:
                a, b = state[f"{name}{LORA_A}weight"], state[f"{name}{LORA_B}weight"]
                value = (value.float() + scale * (b.float() @ a.float())).to(value.dtype)
            merged[f"{name}.{leaf}"] = value
        else:
            merged[key] = value
    return merged


def read_checkpoint_metadata(path: Path) -> dict[str, Any] | None:
    """sam2tool's entry of a training checkpoint (model, settings, versions), or None for other files.

    Raises:
        CheckpointError: The file cannot be read safely.

    """
    path = _existing_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise CheckpointError(_not_a_checkpoint(path, exc)) from exc
    meta = obj.get(CHECKPOINT_META_KEY) if isinstance(obj, Mapping) else None
    return dict(meta) if isinstance(meta, Mapping) else None


def describe_state_dict(state: Mapping[str, torch.Tensor]) -> str | None:
    """Guess which SAM 2 model a state dict belongs to, e.g. ``SAM 2.1 large``; None if unknown."""
    patch = state.get(_TRUNK_PATCH_KEY)
    if patch is None or patch.ndim != 4:
        return None
    depth = len({key[len(_TRUNK_BLOCK_PREFIX) :].split(".")[0] for key in state if key.startswith(_TRUNK_BLOCK_PREFIX)})
    size = size_from_trunk(int(patch.shape[0]), depth)
    version = "2.1" if _SAM21_ONLY_KEY in state else "2"
    if size is None:
        return f"a SAM {version} model with a Hiera trunk of width {patch.shape[0]} and {depth} blocks"
    return f"SAM {version} {size}"


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: Path, spec: ModelSpec) -> None:
    """Load ``state`` into ``model`` strictly.

    Raises:
        CheckpointError: Keys are missing or unexpected, or shapes differ; the message names
            the file, a few of the keys, and which model the checkpoint seems to be for.

    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    if missing or unexpected or mismatched:
        details = "; ".join(
            f"{len(items)} {label} ({_examples(items)})"
            for label, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches (checkpoint vs model)", mismatched),
            )
            if items
        )
        raise CheckpointError(
            f"checkpoint {source} does not fit {spec.display_name}: {details}; {_mismatch_hint(state, spec)}"
        )
    model.load_state_dict(state, strict=True)


def _mismatch_hint(state: Mapping[str, torch.Tensor], spec: ModelSpec) -> str:
    """What to do about a checkpoint that does not fit ``spec``: which model it seems to be for."""
    if spec.size == "micro" and _is_old_micro(state):
        again = (
            "fine-tune again from the packaged base (model.checkpoint: official)" if spec.packaged else "train it again"
        )
        return (
            "it is a micro model of sam2tool 0.1, whose hidden state was 64 wide (sam2tool 0.2 made micro "
            f"128 wide with a 64-wide memory, which --format hf needs); {again}"
        )
    guess = describe_state_dict(state)
    if guess is not None and guess != spec.display_name:
        return f"it looks like {guess}; set model.size and model.version to match, or choose another checkpoint"
    return "choose a checkpoint made for this model"


#: The hidden width of micro before sam2tool 0.2 (``no_mem_embed`` is ``[1, 1, hidden]``).
_OLD_MICRO_HIDDEN = 64


def _is_old_micro(state: Mapping[str, torch.Tensor]) -> bool:
    embed = state.get("no_mem_embed")
    return embed is not None and embed.shape[-1] == _OLD_MICRO_HIDDEN


def _examples(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... {len(items) - limit} more" if len(items) > limit else "")


def save_official_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Write ``{"model": state_dict}`` atomically: the format ``sam2.build_sam`` loads."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    with atomic_path(Path(path)) as tmp:
        torch.save({"model": state}, tmp)


def checkpoint_settings(checkpoint: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The settings a checkpoint was trained with, as ``{"section.key": value}``, and its metadata.

    A sam2tool training checkpoint carries them; an exported ``model.pt`` has them in the
    ``model_card.json`` beside it. Returns ``(None, None)`` for any other checkpoint.
    """
    meta = read_checkpoint_metadata(checkpoint)
    config = meta.get("config") if meta is not None else None
    if not isinstance(config, Mapping):
        config = earlier_card(checkpoint).get("training_config")
    if not isinstance(config, Mapping):
        return None, meta
    flags = {f"{section}.{key}": value for section, values in config.items() for key, value in values.items()}
    return flags, meta


def trained_model_flags(checkpoint: Path) -> dict[str, Any] | None:
    """The ``model.*`` settings and ``dataset.image_size`` a checkpoint was trained with, if it says."""
    flags, _ = checkpoint_settings(checkpoint)
    if flags is None:
        return None
    return {k: v for k, v in flags.items() if k.startswith("model.") or k == "dataset.image_size"}


def earlier_card(checkpoint: Path) -> dict[str, Any]:
    """The model card beside an exported ``model.pt`` (empty when there is none)."""
    card = Path(checkpoint).parent / MODEL_CARD
    try:
        data = json.loads(card.read_text(encoding="utf-8")) if card.is_file() else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
