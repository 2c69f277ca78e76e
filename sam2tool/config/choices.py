"""The choices of the settings that commands also take as flags, as ``Literal`` types.

The schema types its fields with them and the command line builds its choices from them, so the
two cannot drift apart. Pure data, with no pydantic import: ``--help`` reads it.
"""

from __future__ import annotations

from typing import Literal

Precision = Literal["32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true"]
Accelerator = Literal["auto", "cpu", "cuda", "gpu", "mps"]
Strategy = Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp"]
