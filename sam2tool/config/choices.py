"""Every fixed list of values a flag or a setting takes, as ``Literal`` types.

The schema and the services type their fields and arguments with them, and the command line
builds its choices from them, so the two cannot drift apart. Pure data, with no pydantic import:
``--help`` reads it.
"""

from __future__ import annotations

from typing import Literal

Precision = Literal["32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true"]
Accelerator = Literal["auto", "cpu", "cuda", "gpu", "mps"]
Strategy = Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp"]

#: Scoring protocols of ``evaluate``: DAVIS (davis2017-evaluation) or SA-V (vos-benchmark).
EvalProtocol = Literal["davis", "sav"]
#: How the ground truth prompts a model in ``evaluate`` (model mode): its first mask, box or point.
PromptKind = Literal["mask", "box", "point"]
#: Where ``predict-video`` and ``evaluate`` run a model (``auto``: CUDA, then MPS, then the CPU).
Device = Literal["auto", "cpu", "cuda", "mps"]
#: What ``predict-video`` tracks with: PyTorch, or the graphs of an ONNX export in onnxruntime.
Backend = Literal["torch", "onnxruntime"]
#: Dtype of exported weight files.
ExportDtype = Literal["fp32", "bf16", "fp16"]
