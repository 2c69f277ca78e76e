"""LoRA adapters on the micro SAM 2: which parameters train, merging, frozen parts in eval mode."""

from __future__ import annotations

import sys

import pytest
import torch

from sam2tool.config.problems import ConfigError
from sam2tool.config.schema import ModelSettings
from sam2tool.errors import UsageError
from sam2tool.models.build import build_model
from sam2tool.models.lora import PEFT_MISSING, add_lora, has_lora, merged_state_dict, set_frozen_eval
from tests.sam2_probe import two_frame_outputs

TARGETS = ("image_encoder", "sam_mask_decoder")
RANK = 4
ALPHA = 8.0


def micro(trainable_modules: list[str] | None = None) -> torch.nn.Module:
    settings = ModelSettings(size="micro", checkpoint=None, trainable_modules=trainable_modules or ["all"])
    return build_model(settings, 64, load_weights=False).model


def linear_layers(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.startswith(tuple(f"{t}." for t in TARGETS))
    }


def randomize_adapters(model: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)


def test_only_adapters_and_untouched_components_train() -> None:
    model = micro(["memory_attention", "sam_mask_decoder"])
    linears = linear_layers(model)
    assert {name.split(".")[0] for name in linears} == set(TARGETS)
    expected = sum(RANK * (layer.in_features + layer.out_features) for layer in linears.values())

    count = add_lora(model, TARGETS, RANK, ALPHA, 0.0)

    assert count == expected > 0
    assert has_lora(model)
    modules = dict(model.named_modules())
    for name in linears:  # every linear layer of both targets is wrapped
        assert hasattr(modules[name], "base_layer"), name
        assert isinstance(modules[name].base_layer, torch.nn.Linear), name
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    adapters = {name for name in trainable if ".lora_" in name}
    assert sum(p.numel() for n, p in model.named_parameters() if n in adapters) == count
    # The mask decoder was in trainable_modules, but LoRA freezes its base weights; memory
    # attention keeps the trainability apply_trainable_modules gave it; the rest stays frozen.
    memory_attention = {name for name, _ in model.named_parameters() if name.startswith("memory_attention.")}
    assert trainable - adapters == memory_attention
    assert all(name.startswith(TARGETS) for name in adapters)


def test_merged_state_dict_equals_a_plain_model_with_merged_weights() -> None:
    model = micro()
    original_keys = list(model.state_dict())
    reference = two_frame_outputs(micro(), 64)
    add_lora(model, TARGETS, RANK, ALPHA, 0.1)
    randomize_adapters(model)
    lora_keys = list(model.state_dict())

    merged = merged_state_dict(model)

    assert list(merged) == original_keys
    assert list(model.state_dict()) == lora_keys  # the model is untouched
    qkv = model.image_encoder.trunk.blocks[0].attn.qkv
    expected = qkv.base_layer.weight + ALPHA / RANK * qkv.lora_B["default"].weight @ qkv.lora_A["default"].weight
    torch.testing.assert_close(merged["image_encoder.trunk.blocks.0.attn.qkv.weight"], expected)
    out_proj = model.sam_mask_decoder.transformer.layers[0].self_attn.out_proj
    torch.testing.assert_close(
        merged["sam_mask_decoder.transformer.layers.0.self_attn.out_proj.weight"],
        out_proj.base_layer.weight + 2.0 * out_proj.lora_B["default"].weight @ out_proj.lora_A["default"].weight,
    )
    assert merged["image_encoder.trunk.blocks.0.attn.qkv.weight"].data_ptr() != qkv.base_layer.weight.data_ptr()
    assert not any(tensor.requires_grad for tensor in merged.values())

    plain = micro()
    plain.load_state_dict(merged, strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    model.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            plain.image_encoder(x)["vision_features"], model.image_encoder(x)["vision_features"], rtol=1e-4, atol=1e-4
        )
    lora_outputs = two_frame_outputs(model, 64)
    plain_outputs = two_frame_outputs(plain, 64)
    for got, want in zip(plain_outputs, lora_outputs, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # The adapters matter: a model without them (same base weights, same seed) answers differently
    # (masks, object pointers or memories; random weights may score the object absent on both).
    assert not all(torch.allclose(a, b, atol=1e-3) for a, b in zip(reference, lora_outputs, strict=True))


def test_merged_state_dict_without_adapters_is_the_state_dict() -> None:
    model = micro()
    state = model.state_dict()
    merged = merged_state_dict(model)
    assert not has_lora(model)
    assert list(merged) == list(state)
    for key, value in state.items():
        assert torch.equal(merged[key], value), key
        assert merged[key].dtype == value.dtype


def test_zero_initialised_adapters_merge_to_the_base_weights() -> None:
    model = micro()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    add_lora(model, ["sam_mask_decoder"], RANK, ALPHA, 0.0)
    merged = merged_state_dict(model)
    assert list(merged) == list(state)
    for key, value in state.items():
        assert torch.equal(merged[key], value), key


def test_target_without_linear_layers_is_a_config_error() -> None:
    model = micro()
    with pytest.raises(ConfigError) as caught:
        add_lora(model, ["image_encoder", "no_such_component"], RANK, ALPHA, 0.0)
    assert "model.lora_targets" in str(caught.value)
    assert "no_such_component" in str(caught.value)
    assert not has_lora(model)


def test_adding_adapters_twice_is_refused() -> None:
    model = micro()
    add_lora(model, ["sam_mask_decoder"], RANK, ALPHA, 0.0)
    with pytest.raises(UsageError, match="already"):
        add_lora(model, ["image_encoder"], RANK, ALPHA, 0.0)


def test_missing_peft_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(UsageError) as caught:
        add_lora(micro(), TARGETS, RANK, ALPHA, 0.0)
    assert str(caught.value) == PEFT_MISSING == "LoRA needs peft: pip install 'sam2tool[lora]'"


def test_frozen_components_run_in_eval_mode() -> None:
    model = micro(["memory_attention"])
    add_lora(model, ["image_encoder"], RANK, ALPHA, 0.1)
    model.train()

    frozen = set(set_frozen_eval(model))

    with_parameters = {name for name, child in model.named_children() if any(True for _ in child.parameters())}
    assert frozen == with_parameters - {"image_encoder", "memory_attention"}
    assert "sam_mask_decoder" in frozen
    for name, child in model.named_children():
        expected_training = name not in frozen
        assert all(module.training == expected_training for module in child.modules()), name
    assert model.training
    dropout = model.image_encoder.trunk.blocks[0].attn.qkv.lora_dropout["default"]
    assert isinstance(dropout, torch.nn.Dropout)
    assert dropout.training
