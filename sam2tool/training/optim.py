"""AdamW parameter groups and the learning-rate schedule of SAM 2 fine-tuning.

The parameter groups follow the official SAM 2.1 recipe (``sam2.1_hiera_b+_MOSE_finetune.yaml``
with ``training.optimizer.layer_decay_param_modifier``):

* the image encoder (``image_encoder.*``) trains at ``vision_lr``, everything else at ``lr``;
* layer-wise learning-rate decay over the Hiera trunk (``image_encoder.trunk``): with ``L`` blocks
  and decay ``d``, block ``i`` is scaled by ``d ** (L - i)`` (so even the last block gets ``d``),
  the patch embedding by ``d ** (L + 1)``, the position embeddings (``*pos_embed*``) and every
  other trunk parameter by 1, like everything outside the trunk;
* weight decay everywhere except biases (parameters whose own name contains ``bias``, the
  recipe's ``*bias*``) and parameters of normalisation layers
  (the official recipe exempts ``torch.nn.LayerNorm`` only; here any normalisation layer, such as
  sam2's ``LayerNorm2d``, ``GroupNorm`` or ``BatchNorm``, is exempt).

Parameter names may carry LoRA (peft) wrappers such as ``.base_layer.`` or ``.lora_A.default.``;
block indices are parsed through them, and LoRA matrices get weight decay like other weights.

The schedule is a factor of each group's peak learning rate: linear warmup, then cosine down to
``min_lr_ratio`` (the official ``CosineParamScheduler`` with ``end_value = start_value / 10``),
constant, or step decay. The scheduler is stepped once per optimizer step.
"""

from __future__ import annotations

import fnmatch
import importlib
import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from sam2tool.config.schema import OptimizerSettings, SchedulerSettings

#: Prefix of the image encoder's parameter names.
IMAGE_ENCODER_PREFIX = "image_encoder."
#: Prefix of the Hiera trunk's parameter names (where layer-wise decay applies).
TRUNK_PREFIX = "image_encoder.trunk."
#: Trunk parameters whose learning-rate scale the official recipe overrides to 1.0.
SCALE_OVERRIDE_PATTERN = "*pos_embed*"

#: Name prefixes added by wrappers (peft's PeftModel, torch.compile), stripped before matching.
_WRAPPER_PREFIXES = ("base_model.model.", "_orig_mod.")
#: Class names of normalisation layers: LayerNorm, LayerNorm2d, GroupNorm, BatchNorm2d, RMSNorm...
_NORM_CLASS = re.compile(r"Norm(\d+d)?$")
_BLOCK_INDEX = re.compile(r"(?:^|\.)blocks\.(\d+)(?:\.|$)")


def canonical_name(name: str) -> str:
    """A parameter name without the prefixes of model wrappers.

    Args:
        name: A name from ``model.named_parameters()``.

    Returns:
        The name as the bare SAM 2 model spells it, e.g. ``image_encoder.trunk.blocks.0...``
        for ``base_model.model.image_encoder.trunk.blocks.0...`` (peft).

    """
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                stripped = True
    return name


def trunk_layer_id(name: str, num_layers: int) -> int:
    """The layer id of a Hiera trunk parameter, as ``Hiera.get_layer_id`` defines it.

    Layer 0 is the patch and position embeddings, layer ``i + 1`` is block ``i``, and layer
    ``num_layers + 1`` is anything else (``rel_pos`` tables, for example).

    Args:
        name: A parameter name (full or relative to the trunk); LoRA wrappers such as
            ``blocks.3.attn.qkv.lora_A.default.weight`` are fine.
        num_layers: Number of blocks of the trunk.

    Returns:
        The layer id, from 0 to ``num_layers + 1``.

    """
    name = canonical_name(name)
    if "rel_pos" in name:
        return num_layers + 1
    if "pos_embed" in name or "patch_embed" in name:
        return 0
    match = _BLOCK_INDEX.search(name)
    if match is not None:
        return int(match.group(1)) + 1
    return num_layers + 1


def layer_scale(name: str, num_layers: int, layer_decay: float) -> float:
    """The learning-rate multiplier of a parameter under the official layer-wise decay.

    Equal to what ``training.optimizer.layer_decay_param_modifier`` computes with
    ``apply_to="image_encoder.trunk"`` and the recipe's ``*pos_embed*`` override to 1.0: block
    ``i`` of ``num_layers`` gets ``layer_decay ** (num_layers - i)``, the patch embedding
    ``layer_decay ** (num_layers + 1)``, and every other parameter 1.0.

    Args:
        name: A parameter name relative to the SAM 2 model.
        num_layers: Number of blocks of the Hiera trunk.
        layer_decay: Decay per block (1.0: no decay).

    Returns:
        The multiplier of the parameter's peak learning rate.

    """
    name = canonical_name(name)
    if layer_decay == 1.0 or not name.startswith(TRUNK_PREFIX):
        return 1.0
    if fnmatch.fnmatchcase(name, SCALE_OVERRIDE_PATTERN):
        return 1.0
    # The official modifier counts num_layers + 1 layers but Hiera numbers blocks from 1 to
    # num_layers, so the exponent is off by one from BEiT's: the last block is decayed once.
    return float(layer_decay ** (num_layers + 1 - trunk_layer_id(name, num_layers)))


def is_norm_layer(module: torch.nn.Module) -> bool:
    """Whether a module is a normalisation layer (any class in its MRO named ``...Norm[Nd]``).

    Args:
        module: A module.

    Returns:
        True for LayerNorm, sam2's LayerNorm2d, GroupNorm, BatchNorm*, InstanceNorm*, RMSNorm...

    """
    return any(_NORM_CLASS.search(cls.__name__) for cls in type(module).__mro__)


def _trunk_num_layers(model: torch.nn.Module, names: list[str]) -> int:
    """Number of Hiera blocks: ``len(model.image_encoder.trunk.blocks)``, else from the names."""
    blocks: object = model
    for attribute in ("image_encoder", "trunk", "blocks"):
        blocks = getattr(blocks, attribute, None)
    if isinstance(blocks, torch.nn.ModuleList | torch.nn.Sequential | list | tuple):
        return len(blocks)
    indices = [
        int(match.group(1))
        for name in names
        if name.startswith(TRUNK_PREFIX) and (match := _BLOCK_INDEX.search(name)) is not None
    ]
    return max(indices) + 1 if indices else 0


@dataclass(frozen=True)
class _GroupKey:
    section: str
    layer_id: int | None
    decay: bool


def param_groups(model: torch.nn.Module, settings: OptimizerSettings) -> list[dict[str, Any]]:
    """AdamW parameter groups of the trainable parameters of a SAM 2 model.

    Parameters are grouped by component (image encoder or rest), Hiera layer (only where layer
    decay scales the learning rate below the peak) and weight decay (on or off), so there are
    few groups. Groups come in the order their first parameter appears in
    ``model.named_parameters()``, so the same model and settings give the same groups (as
    resuming from an optimizer state requires).

    Args:
        model: The model (a ``SAM2Base``, possibly with LoRA adapters); parameters that do not
            require gradients are left out.
        settings: Learning rates, weight decay and layer decay.

    Returns:
        One dict per group with ``params``, ``lr`` (peak learning rate × layer scale),
        ``peak_lr`` (the same, kept unchanged by schedulers), ``lr_scale`` (the layer scale),
        ``weight_decay`` and ``name``: ``"<part> / wd"`` or ``"<part> / no_wd"``, where part is
        ``image_encoder``, ``rest`` or ``image_encoder.trunk layer N`` (N as in
        :func:`trunk_layer_id`: 0 the patch embedding, ``i + 1`` block ``i``).

    """
    owner_is_norm: dict[str, bool] = {}
    for module_name, module in model.named_modules():
        norm = is_norm_layer(module)
        for param_name, _ in module.named_parameters(recurse=False):
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            owner_is_norm[full_name] = norm

    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    canonical = [canonical_name(name) for name, _ in trainable]
    num_layers = _trunk_num_layers(model, canonical)
    vision_lr = settings.vision_lr if settings.vision_lr is not None else settings.lr

    groups: dict[_GroupKey, dict[str, Any]] = {}
    for (name, parameter), bare in zip(trainable, canonical, strict=True):
        in_encoder = bare.startswith(IMAGE_ENCODER_PREFIX)
        scale = layer_scale(bare, num_layers, settings.layer_decay)
        leaf = bare.rsplit(".", 1)[-1]
        decay = settings.weight_decay > 0 and "bias" not in leaf and not owner_is_norm.get(name, False)
        layer_id = trunk_layer_id(bare, num_layers) if scale != 1.0 else None
        section = "image_encoder" if in_encoder else "rest"
        key = _GroupKey(section, layer_id, decay)
        group = groups.get(key)
        if group is None:
            label = section if layer_id is None else f"image_encoder.trunk layer {layer_id}"
            peak = (vision_lr if in_encoder else settings.lr) * scale
            group = {
                "params": [],
                "lr": peak,
                "peak_lr": peak,
                "lr_scale": scale,
                "weight_decay": settings.weight_decay if decay else 0.0,
                "name": f"{label} / {'wd' if decay else 'no_wd'}",
            }
            groups[key] = group
        group["params"].append(parameter)
    return list(groups.values())


def build_optimizer(model: torch.nn.Module, settings: OptimizerSettings) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` of the model, with the settings' betas and epsilon.

    Args:
        model: The model; only parameters that require gradients are optimised.
        settings: Optimizer settings.

    Returns:
        The optimizer: fused where the device allows it (:func:`fused_supported`), else the
        implementation torch picks.

    Raises:
        ValueError: No parameter of the model requires gradients.

    """
    groups = param_groups(model, settings)
    if not groups:
        raise ValueError("the model has no trainable parameters: check model.trainable_modules")
    return torch.optim.AdamW(
        groups,
        lr=settings.lr,
        betas=settings.betas,
        eps=settings.eps,
        weight_decay=settings.weight_decay,
        fused=fused_supported([p for group in groups for p in group["params"]]) or None,
    )


def fused_supported(parameters: list[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW (one kernel for all parameters, no per-parameter host reads) takes these.

    It needs every parameter floating point on one device type torch has fused kernels for (CUDA,
    the CPU, MPS, ...). The parameters must already be on their device: Lightning builds the
    optimizer after moving the model.
    """
    supported = importlib.import_module("torch.optim.optimizer")._get_fused_kernels_supported_devices()
    devices = {p.device.type for p in parameters}
    return len(devices) == 1 and devices <= set(supported) and all(p.is_floating_point() for p in parameters)


def _factor(
    step: int,
    *,
    name: str,
    warmup_steps: int,
    min_lr_ratio: float,
    step_size: int,
    gamma: float,
    total_steps: int,
) -> float:
    """The schedule's factor at ``step`` (see :func:`lr_factor`)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    step = min(step, total_steps)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if name == "constant":
        return 1.0
    if name == "step":
        return float(gamma ** ((step - warmup_steps) // step_size))
    if name == "cosine":
        decay_steps = total_steps - warmup_steps
        progress = 1.0 if decay_steps <= 0 else (step - warmup_steps) / decay_steps
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown learning-rate schedule '{name}'")


def lr_factor(step: int, settings: SchedulerSettings, total_steps: int) -> float:
    """Multiplier of the peak learning rate after ``step`` optimizer steps.

    Warmup: ``(step + 1) / warmup_steps`` for ``step < warmup_steps`` (the first optimizer step
    already has a non-zero learning rate; the peak is reached at step ``warmup_steps - 1``).
    Then, counting from ``warmup_steps``: cosine from 1.0 down to ``min_lr_ratio`` at
    ``total_steps``, constant 1.0, or ``gamma ** ((step - warmup_steps) // step_size)``. Steps past
    ``total_steps`` keep the value at ``total_steps``.

    Args:
        step: Optimizer steps made so far (0 for the first step).
        settings: The schedule.
        total_steps: Optimizer steps of the whole run (see :func:`total_training_steps`).

    Returns:
        The factor, in ``[0, 1]``.

    Raises:
        ValueError: ``step`` is negative or ``total_steps`` is below 1.

    """
    return LrFactor(settings, total_steps)(step)


class LrFactor:
    """:func:`lr_factor` as a picklable callable whose state is plain numbers and a string.

    ``LambdaLR.state_dict()`` saves the ``__dict__`` of callable objects (and nothing for
    functions), and ``load_state_dict`` restores it, so a resumed run continues the saved
    schedule exactly.
    """

    def __init__(self, settings: SchedulerSettings, total_steps: int) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.name: str = settings.name
        self.warmup_steps: int = settings.warmup_steps
        self.min_lr_ratio: float = settings.min_lr_ratio
        self.step_size: int = settings.step_size
        self.gamma: float = settings.gamma
        self.total_steps: int = total_steps

    def __call__(self, step: int) -> float:
        """The factor after ``step`` optimizer steps.

        Args:
            step: Optimizer steps made so far.

        Returns:
            The multiplier of each group's peak learning rate.

        """
        return _factor(
            step,
            name=self.name,
            warmup_steps=self.warmup_steps,
            min_lr_ratio=self.min_lr_ratio,
            step_size=self.step_size,
            gamma=self.gamma,
            total_steps=self.total_steps,
        )


def build_scheduler(
    optimizer: torch.optim.Optimizer, settings: SchedulerSettings, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler setting each group's learning rate to its peak × :func:`lr_factor`.

    Step it once per optimizer step (Lightning: ``"interval": "step"``). The peak of a group is
    its ``lr`` when the scheduler is created (LambdaLR keeps it as ``initial_lr``), so create the
    scheduler right after :func:`build_optimizer`.

    Args:
        optimizer: The optimizer, e.g. from :func:`build_optimizer`.
        settings: The schedule.
        total_steps: Optimizer steps of the whole run.

    Returns:
        The scheduler; its ``state_dict()`` holds no function objects and round-trips.

    Raises:
        ValueError: ``total_steps`` is below 1.

    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LrFactor(settings, total_steps))


def total_training_steps(
    max_steps: int | None,
    max_epochs: int | None,
    batches_per_epoch: int,
    accumulate_grad_batches: int,
) -> int:
    """Optimizer steps a run will make.

    Lightning steps the optimizer every ``accumulate_grad_batches`` batches and at the last batch
    of each epoch, so an epoch makes ``ceil(batches_per_epoch / accumulate_grad_batches)`` steps.

    Args:
        max_steps: Step limit (None: none).
        max_epochs: Epoch limit (None: none).
        batches_per_epoch: Training batches per epoch (per process).
        accumulate_grad_batches: Batches per optimizer step.

    Returns:
        The smaller of ``max_steps`` and ``max_epochs`` × steps per epoch.

    Raises:
        ValueError: Neither limit is given, a value is out of range, or the run makes no step.

    """
    if max_steps is None and max_epochs is None:
        raise ValueError("give max_steps or max_epochs: the run needs an end for the schedule")
    if accumulate_grad_batches < 1:
        raise ValueError(f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}")
    if batches_per_epoch < 0:
        raise ValueError(f"batches_per_epoch must be >= 0, got {batches_per_epoch}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if max_epochs is not None and max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
    limits = []
    if max_steps is not None:
        limits.append(max_steps)
    if max_epochs is not None:
        limits.append(max_epochs * math.ceil(batches_per_epoch / accumulate_grad_batches))
    total = min(limits)
    if total < 1:
        raise ValueError("the run makes no optimizer step: there are no training batches")
    return total
