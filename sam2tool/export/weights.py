"""Weight files of an export: Meta's ``{"model": state_dict}`` + model YAML, and safetensors.

``model.pt`` and ``model.yaml`` are what the official ``sam2`` package loads::

    import os
    from sam2.build_sam import build_sam2_video_predictor
    predictor = build_sam2_video_predictor("/" + os.path.abspath("export/model.yaml"), "export/model.pt")

The leading ``/`` matters: ``build_sam2`` hands the name to Hydra, whose search path is the sam2
package; ``//abs/path.yaml`` makes it read a file outside the package.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from sam2tool.config.choices import ExportDtype
from sam2tool.errors import ExportError
from sam2tool.models.onnx_bundle import file_sha256

#: ``--dtype`` -> torch dtype of the floating-point tensors written.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: File names inside an export folder.
SAM2_WEIGHTS = "model.pt"
SAM2_CONFIG = "model.yaml"
SAFETENSORS_WEIGHTS = "model.safetensors"


def cast_state_dict(state: Mapping[str, torch.Tensor], dtype: ExportDtype) -> dict[str, torch.Tensor]:
    """Floating-point tensors in ``dtype`` (others unchanged), detached, contiguous, on the CPU.

    Raises:
        ExportError: A weight does not fit the 16-bit range (it would become infinite).

    """
    target = DTYPES[dtype]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        tensor = value.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype != target:
            tensor = tensor.to(target)
            if not bool(torch.isfinite(tensor).all()) and bool(torch.isfinite(value).all()):
                raise ExportError(f"weight {key} overflows {dtype}; export with --dtype bf16 or fp32")
        out[key] = tensor.contiguous()
    return out


def model_yaml(config: Mapping[str, Any], header: str) -> str:
    """The resolved Hydra model config as YAML, with ``header`` as comment lines on top.

    The first line is Hydra's ``# @package _global_``: without it, Hydra nests a config read from
    an absolute path under a package named after the path, and ``cfg.model`` is not found.
    """
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return "# @package _global_\n" + comments + yaml.safe_dump(dict(config), sort_keys=False)


def write_sam2(state: Mapping[str, torch.Tensor], config: Mapping[str, Any], folder: Path, header: str) -> list[Path]:
    """Write ``model.pt`` (``{"model": state}``) and ``model.yaml`` into ``folder``."""
    weights, config_file = folder / SAM2_WEIGHTS, folder / SAM2_CONFIG
    torch.save({"model": dict(state)}, weights)
    config_file.write_text(model_yaml(config, header), encoding="utf-8")
    return [weights, config_file]


def write_safetensors(state: Mapping[str, torch.Tensor], folder: Path, metadata: Mapping[str, str]) -> Path:
    """Write ``model.safetensors`` (tensors that share memory are written as copies)."""
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise ExportError("the safetensors format needs the safetensors package: pip install safetensors") from None
    path = folder / SAFETENSORS_WEIGHTS
    save_file({key: value.clone() for key, value in state.items()}, str(path), metadata=dict(metadata))
    return path


def file_entry(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a written file (for the model card)."""
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path
