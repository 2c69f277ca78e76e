"""LoRA adapters (peft) on SAM 2 components, and merging them back into plain weights.

``add_lora`` wraps every ``torch.nn.Linear`` of the chosen top-level components (``image_encoder``,
``sam_mask_decoder``) in a peft LoRA layer, freezes those components' base weights and leaves
every other component's ``requires_grad`` as ``model.trainable_modules`` set it.

``merged_state_dict`` gives the state dict the model would have without adapters, with each
adapter's update ``lora_alpha / lora_rank * B @ A`` added to its base weight: the format the
official ``sam2`` package and the validation predictor load.

peft (and through it transformers, a few seconds) is imported only by ``add_lora``; the other
functions import nothing when no adapter was ever created in the process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import torch

from sam2tool.config.problems import ConfigError
from sam2tool.errors import UsageError

log = logging.getLogger(__name__)

#: Name peft gives the adapter ``add_lora`` injects.
ADAPTER_NAME = "default"
#: Message of the error raised when peft is missing.
PEFT_MISSING = "LoRA needs peft: pip install 'sam2tool[lora]'"
#: Submodule name under which peft keeps the wrapped layer.
_BASE_LAYER = "base_layer"


def add_lora(model: torch.nn.Module, targets: Sequence[str], rank: int, alpha: float, dropout: float) -> int:
    """Inject LoRA adapters into every linear layer of the ``targets`` components, in place.

    Every parameter under a target that is not an adapter parameter is frozen; the adapter
    parameters are trainable. Parameters outside the targets keep their ``requires_grad``
    (``apply_trainable_modules`` runs before this). The adapters start as a no-op (peft
    initialises ``lora_B`` to zeros).

    Args:
        model: The SAM 2 model (``SAM2Base`` or a subclass).
        targets: Top-level component names, e.g. ``["image_encoder", "sam_mask_decoder"]``.
        rank: LoRA rank ``r``.
        alpha: LoRA alpha; updates are scaled by ``alpha / rank``.
        dropout: Dropout on the adapters' input during training.

    Returns:
        The number of adapter parameters added.

    Raises:
        UsageError: peft is not installed, or the model already has LoRA adapters.
        ConfigError: A target has no linear layer in this model (key ``model.lora_targets``).

    """
    targets = list(dict.fromkeys(targets))
    if not targets:
        return 0
    if has_lora(model):
        raise UsageError("This model already has LoRA adapters; add_lora must run once per model")
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as error:
        raise UsageError(PEFT_MISSING) from error

    modules = _linear_layers(model, targets)
    missing = [target for target in targets if not any(_under(name, target) for name in modules)]
    if missing:
        raise ConfigError.single(
            "model.lora_targets",
            f"{', '.join(map(repr, missing))} has no linear layer in this model to put a LoRA adapter on",
            value=list(targets),
        )

    # peft freezes the whole model on the first injection; remember what was trainable.
    before = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,  # type: ignore[arg-type]  # annotated int, but peft only computes alpha / r
        lora_dropout=dropout,
        target_modules=modules,
        bias="none",
        init_lora_weights=True,
    )
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)

    layers = _lora_layers(model)
    adapters = 0
    for name, parameter in model.named_parameters():
        if _is_adapter(name, layers):
            parameter.requires_grad_(True)
            adapters += parameter.numel()
        elif any(_under(name, target) for target in targets):
            parameter.requires_grad_(False)
        else:
            parameter.requires_grad_(before[name])
    log.info(
        "LoRA (rank %d, alpha %g) on %d linear layers of %s: %s adapter parameters",
        rank,
        alpha,
        len(layers),
        ", ".join(targets),
        f"{adapters:,}",
    )
    return adapters


def has_lora(model: torch.nn.Module) -> bool:
    """Whether ``model`` contains peft LoRA layers."""
    return bool(_lora_layers(model))


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict ``model`` would have without adapters, with the active adapters merged in.

    Each LoRA layer's ``base_layer.*`` entries take the layer's own name (``...qkv.weight``
    instead of ``...qkv.base_layer.weight``), its weight gets ``scaling * B @ A`` (transposed for
    peft's ``fan_in_fan_out``) added, and the adapter entries are dropped. The model is not
    modified. Without adapters this is a copy of ``model.state_dict()``.

    Returns:
        Detached copies of the tensors, on the device and in the dtype of the model's own.

    Raises:
        UsageError: A LoRA layer uses a variant that cannot be merged into a plain weight (DoRA,
            LoRA bias).

    """
    layers = _lora_layers(model)
    merged: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key, value in model.state_dict().items():
            prefix = _owner(key, layers)
            if prefix is None:
                merged[key] = value.detach().clone()
                continue
            rest = key[len(prefix) + 1 :]
            if not rest.startswith(_BASE_LAYER + "."):
                continue  # adapter weights (lora_A, lora_B, ...)
            name = f"{prefix}.{rest[len(_BASE_LAYER) + 1 :]}"
            if rest == f"{_BASE_LAYER}.weight":
                merged[name] = _merged_weight(layers[prefix], value, prefix)
            else:
                merged[name] = value.detach().clone()
    return merged


def set_frozen_eval(model: torch.nn.Module) -> list[str]:
    """Put every top-level component whose parameters are all frozen into eval mode.

    Children without parameters are left alone. A LoRA target has trainable adapter parameters
    (its dropout lives inside them), so it stays in train mode. Call after ``model.train()``.

    Returns:
        Names of the children put into eval mode.

    """
    frozen: list[str] = []
    for name, child in model.named_children():
        parameters = list(child.parameters())
        if parameters and not any(parameter.requires_grad for parameter in parameters):
            child.eval()
            frozen.append(name)
    return frozen


def _linear_layers(model: torch.nn.Module, targets: Sequence[str]) -> list[str]:
    """Full names of the linear layers under ``targets``, except those ``nn.MultiheadAttention`` owns."""
    owned_by_attention = {
        f"{name}.{child}" if name else child
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.MultiheadAttention)
        for child, _ in module.named_children()
    }
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and name not in owned_by_attention
        and any(_under(name, target) for target in targets)
    ]


def _lora_layers(model: torch.nn.Module) -> dict[str, Any]:
    """LoRA layers of ``model`` by module name (none without importing peft if peft is not loaded)."""
    if "peft.tuners.lora" not in sys.modules:
        return {}  # no peft LoRA layer can exist before peft's LoRA module is imported
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def _owner(key: str, layers: dict[str, Any]) -> str | None:
    """Name of the LoRA layer a state-dict key belongs to, or None."""
    if not layers:
        return None
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in layers:
            return prefix
    return None


def _is_adapter(name: str, layers: dict[str, Any]) -> bool:
    """Whether a parameter or state-dict key belongs to an adapter (a LoRA layer, not its base layer)."""
    prefix = _owner(name, layers)
    return prefix is not None and not name[len(prefix) + 1 :].startswith(_BASE_LAYER + ".")


def _merged_weight(layer: Any, weight: torch.Tensor, name: str) -> torch.Tensor:
    """``weight`` plus the deltas of the layer's active, not yet merged adapters."""
    result = weight.detach().to(torch.float32 if weight.is_floating_point() else weight.dtype, copy=True)
    if layer.disable_adapters:
        return result.to(weight.dtype)
    already = set(layer.merged_adapters)
    for adapter in layer.active_adapters:
        if adapter not in layer.lora_A or adapter in already:
            continue
        if getattr(layer, "use_dora", {}).get(adapter) or getattr(layer, "lora_bias", {}).get(adapter):
            raise UsageError(f"Cannot merge the LoRA adapter {adapter!r} of {name}: DoRA and LoRA bias are unsupported")
        delta: torch.Tensor = layer.get_delta_weight(adapter)
        result += delta.detach().to(device=result.device, dtype=result.dtype)
    return result.to(weight.dtype)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")
