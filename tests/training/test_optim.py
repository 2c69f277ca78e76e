"""Parameter groups, the learning-rate schedule and step counting (against Meta's recipe)."""

from __future__ import annotations

import copy
import io
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sam2tool.config.schema import ModelSettings, OptimizerSettings, SchedulerSettings
from sam2tool.models.build import build_model
from sam2tool.training.optim import (
    build_optimizer,
    build_scheduler,
    canonical_name,
    layer_scale,
    lr_factor,
    param_groups,
    total_training_steps,
    trunk_layer_id,
)

RECIPE = "sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml"
BASE_LR, VISION_LR = 5.0e-6, 3.0e-6


class ConstantValue:
    """Stand-in for fvcore's schedulers (not installed): the value at the start of training."""

    def __init__(self, value: float | None = None, start_value: float | None = None, **_: Any) -> None:
        self.value = value if value is not None else start_value

    def __call__(self, where: float) -> float | None:
        return self.value


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model(ModelSettings(size="micro", checkpoint=None), 64).model


def recipe_settings() -> OptimizerSettings:
    return OptimizerSettings(lr=BASE_LR, vision_lr=VISION_LR, weight_decay=0.1, layer_decay=0.9)


def per_parameter(model: torch.nn.Module, groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_id = {id(p): name for name, p in model.named_parameters()}
    found: dict[str, dict[str, Any]] = {}
    for group in groups:
        for parameter in group["params"]:
            name = by_id[id(parameter)]
            assert name not in found, f"{name} is in two groups"
            found[name] = group
    return found


def official_groups(model: torch.nn.Module) -> dict[str, tuple[float, float]]:
    """(lr, weight_decay) of every parameter from Meta's construct_optimizer and the recipe's optim section."""
    import sam2
    from training.optimizer import construct_optimizer

    recipe = yaml.safe_load((Path(sam2.__file__).parent / "configs" / RECIPE).read_text())
    optim = recipe["trainer"]["optim"]
    options = copy.deepcopy(optim["options"])
    for option, configs in options.items():
        for config in configs:
            assert config["scheduler"]["_target_"].startswith("fvcore.common.param_scheduler.")
            if option == "lr":  # start values are ${scratch.base_lr} / ${scratch.vision_lr}
                assert config.get("param_names") in (None, ["image_encoder.*"])
                config["scheduler"] = {"value": VISION_LR if "param_names" in config else BASE_LR}
            config["scheduler"]["_target_"] = f"{__name__}.ConstantValue"
    optimizer = construct_optimizer(model, optim["optimizer"], options, optim["param_group_modifiers"]).optimizer
    by_id = {id(p): name for name, p in model.named_parameters()}
    return {
        by_id[id(p)]: (group["lr"], group["weight_decay"]) for group in optimizer.param_groups for p in group["params"]
    }


def test_groups_match_the_official_recipe(model: torch.nn.Module) -> None:
    groups = param_groups(model, recipe_settings())
    ours = per_parameter(model, groups)
    official = official_groups(model)
    assert set(ours) == set(official) == {name for name, _ in model.named_parameters()}
    owners = dict(model.named_modules())
    layer_norm_2d = set()
    for name, (lr, weight_decay) in official.items():
        assert ours[name]["lr"] == pytest.approx(lr, rel=1e-12), name
        owner = owners[name.rpartition(".")[0]]
        if type(owner).__name__ == "LayerNorm2d" and not name.endswith(".bias"):
            # The recipe exempts torch.nn.LayerNorm only: sam2's LayerNorm2d weights decay there.
            layer_norm_2d.add(name)
            assert weight_decay == 0.1 and ours[name]["weight_decay"] == 0.0, name
        else:
            assert ours[name]["weight_decay"] == weight_decay, name
    assert layer_norm_2d  # the micro model has LayerNorm2d layers (mask downsampler, decoder upscaling)
    assert len(groups) <= 2 * (len(model.image_encoder.trunk.blocks) + 3)


def test_official_layer_decay_reference_is_not_trivial(model: torch.nn.Module) -> None:
    official = official_groups(model)
    blocks = len(model.image_encoder.trunk.blocks)
    assert blocks == 5
    prefix = "image_encoder.trunk."
    assert official[prefix + f"blocks.{blocks - 1}.attn.qkv.weight"][0] == pytest.approx(VISION_LR * 0.9)
    assert official[prefix + "blocks.0.attn.qkv.weight"][0] == pytest.approx(VISION_LR * 0.9**blocks)
    assert official[prefix + "patch_embed.proj.weight"][0] == pytest.approx(VISION_LR * 0.9 ** (blocks + 1))
    assert official[prefix + "pos_embed"][0] == pytest.approx(VISION_LR)
    assert official["image_encoder.neck.convs.0.conv.weight"][0] == pytest.approx(VISION_LR)
    assert official["sam_mask_decoder.conv_s0.weight"][0] == pytest.approx(BASE_LR)


def test_every_trainable_parameter_once_and_decay_rules(model: torch.nn.Module) -> None:
    settings = OptimizerSettings(lr=1e-4, vision_lr=2e-5, weight_decay=0.05, layer_decay=0.8)
    groups = param_groups(model, settings)
    ours = per_parameter(model, groups)
    assert set(ours) == {name for name, p in model.named_parameters() if p.requires_grad}
    owners = dict(model.named_modules())
    for name, parameter in model.named_parameters():
        group = ours[name]
        owner = owners[name.rpartition(".")[0]]
        is_norm = isinstance(owner, torch.nn.LayerNorm) or type(owner).__name__ == "LayerNorm2d"
        if name.endswith(".bias") or is_norm:
            assert group["weight_decay"] == 0.0, name
            assert group["name"].endswith("/ no_wd")
        elif parameter.ndim >= 2:
            assert group["weight_decay"] == 0.05, name
        peak = 2e-5 if name.startswith("image_encoder.") else 1e-4
        assert group["lr"] == pytest.approx(peak * layer_scale(name, 5, 0.8)), name
        assert group["peak_lr"] == group["lr"]
    assert ours["image_encoder.neck.convs.0.conv.weight"]["lr"] == pytest.approx(2e-5)
    assert ours["image_encoder.neck.convs.0.conv.weight"]["name"] == "image_encoder / wd"
    assert ours["image_encoder.trunk.blocks.2.attn.qkv.weight"]["name"] == "image_encoder.trunk layer 3 / wd"
    assert ours["image_encoder.trunk.blocks.2.norm1.weight"]["name"] == "image_encoder.trunk layer 3 / no_wd"
    assert ours["memory_attention.norm.weight"]["name"] == "rest / no_wd"
    assert ours["sam_mask_decoder.conv_s0.weight"]["lr"] == pytest.approx(1e-4)


def test_vision_lr_defaults_to_lr_and_no_layer_decay(model: torch.nn.Module) -> None:
    groups = param_groups(model, OptimizerSettings(lr=3e-4))
    assert {group["lr"] for group in groups} == {3e-4}
    assert sorted(group["name"] for group in groups) == [
        "image_encoder / no_wd",
        "image_encoder / wd",
        "rest / no_wd",
        "rest / wd",
    ]


def test_frozen_parameters_are_left_out() -> None:
    built = build_model(
        ModelSettings(size="micro", checkpoint=None, trainable_modules=["sam_mask_decoder"]),
        64,
    )
    model = built.model
    groups = param_groups(model, recipe_settings())
    ours = per_parameter(model, groups)
    assert ours and all(name.startswith("sam_mask_decoder.") for name in ours)
    assert set(ours) == {name for name, p in model.named_parameters() if p.requires_grad}
    optimizer = build_optimizer(model, recipe_settings())
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(ours)

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    assert param_groups(model, recipe_settings()) == []
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model, recipe_settings())


def test_build_optimizer_uses_the_settings(model: torch.nn.Module) -> None:
    settings = OptimizerSettings(lr=1e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.2)
    optimizer = build_optimizer(model, settings)
    assert isinstance(optimizer, torch.optim.AdamW)
    for group in optimizer.param_groups:
        assert group["betas"] == (0.8, 0.95)
        assert group["eps"] == 1e-6
        assert group["weight_decay"] in (0.0, 0.2)


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("image_encoder.trunk.blocks.1.attn.qkv.lora_A.default.weight", 2),
        ("image_encoder.trunk.blocks.1.attn.qkv.lora_B.default.weight", 2),
        ("image_encoder.trunk.blocks.11.attn.qkv.base_layer.weight", 12),
        ("image_encoder.trunk.blocks.11.attn.qkv.base_layer.bias", 12),
        ("base_model.model.image_encoder.trunk.blocks.3.mlp.layers.0.lora_A.default.weight", 4),
        ("image_encoder.trunk.patch_embed.proj.weight", 0),
        ("image_encoder.trunk.pos_embed", 0),
        ("image_encoder.trunk.pos_embed_window", 0),
        ("image_encoder.trunk.rel_pos_h", 25),
        ("image_encoder.trunk.something_else", 25),
    ],
)
def test_layer_ids_through_lora_wrappers(name: str, layer: int) -> None:
    assert trunk_layer_id(name, 24) == layer


def test_layer_ids_agree_with_hiera(model: torch.nn.Module) -> None:
    trunk = model.image_encoder.trunk
    for name, _ in model.named_parameters():
        if name.startswith("image_encoder.trunk."):
            assert trunk_layer_id(name, len(trunk.blocks)) == trunk.get_layer_id(name), name
            lora = name.replace(".qkv.", ".qkv.lora_A.default.")
            assert trunk_layer_id(lora, len(trunk.blocks)) == trunk.get_layer_id(lora), lora


class FakeLoraModel(torch.nn.Module):
    """Names and module classes as peft leaves them on a Hiera block's qkv projection."""

    def __init__(self) -> None:
        super().__init__()
        qkv = torch.nn.Module()
        qkv.base_layer = torch.nn.Linear(4, 12)
        qkv.lora_A = torch.nn.ModuleDict({"default": torch.nn.Linear(4, 2, bias=False)})
        qkv.lora_B = torch.nn.ModuleDict({"default": torch.nn.Linear(2, 12, bias=False)})
        qkv.base_layer.requires_grad_(False)
        block = torch.nn.Module()
        block.attn = torch.nn.Module()
        block.attn.qkv = qkv
        block.norm1 = torch.nn.LayerNorm(4)
        block.norm1.requires_grad_(False)
        trunk = torch.nn.Module()
        trunk.blocks = torch.nn.ModuleList([torch.nn.Module(), block])
        self.image_encoder = torch.nn.Module()
        self.image_encoder.trunk = trunk
        self.sam_mask_decoder = torch.nn.Module()
        self.sam_mask_decoder.norm = torch.nn.GroupNorm(2, 4)
        self.sam_mask_decoder.bn = torch.nn.BatchNorm2d(4)


def test_lora_parameters_grouped_with_their_block() -> None:
    model = FakeLoraModel()
    settings = OptimizerSettings(lr=1e-3, vision_lr=1e-4, weight_decay=0.1, layer_decay=0.5)
    ours = per_parameter(model, param_groups(model, settings))
    assert set(ours) == {
        "image_encoder.trunk.blocks.1.attn.qkv.lora_A.default.weight",
        "image_encoder.trunk.blocks.1.attn.qkv.lora_B.default.weight",
        "sam_mask_decoder.norm.weight",
        "sam_mask_decoder.norm.bias",
        "sam_mask_decoder.bn.weight",
        "sam_mask_decoder.bn.bias",
    }
    lora_a = ours["image_encoder.trunk.blocks.1.attn.qkv.lora_A.default.weight"]
    assert lora_a is ours["image_encoder.trunk.blocks.1.attn.qkv.lora_B.default.weight"]
    # Two blocks: block 1 is the last one, scaled by layer_decay ** (2 - 1).
    assert lora_a["lr"] == pytest.approx(1e-4 * 0.5)
    assert lora_a["weight_decay"] == 0.1
    assert lora_a["name"] == "image_encoder.trunk layer 2 / wd"
    for name in ("norm.weight", "norm.bias", "bn.weight", "bn.bias"):
        assert ours[f"sam_mask_decoder.{name}"]["weight_decay"] == 0.0


def test_canonical_name() -> None:
    assert canonical_name("base_model.model.image_encoder.trunk.pos_embed") == "image_encoder.trunk.pos_embed"
    assert canonical_name("_orig_mod.sam_mask_decoder.conv_s0.weight") == "sam_mask_decoder.conv_s0.weight"
    assert canonical_name("sam_mask_decoder.conv_s0.weight") == "sam_mask_decoder.conv_s0.weight"


def test_layer_scale_values() -> None:
    assert layer_scale("image_encoder.trunk.blocks.23.attn.qkv.weight", 24, 0.9) == pytest.approx(0.9)
    assert layer_scale("image_encoder.trunk.blocks.0.attn.qkv.weight", 24, 0.9) == pytest.approx(0.9**24)
    assert layer_scale("image_encoder.trunk.patch_embed.proj.weight", 24, 0.9) == pytest.approx(0.9**25)
    assert layer_scale("image_encoder.trunk.pos_embed_window", 24, 0.9) == 1.0
    assert layer_scale("image_encoder.neck.convs.0.conv.weight", 24, 0.9) == 1.0
    assert layer_scale("memory_attention.layers.0.linear1.weight", 24, 0.9) == 1.0
    assert layer_scale("image_encoder.trunk.blocks.0.attn.qkv.weight", 24, 1.0) == 1.0


# --- schedule ---------------------------------------------------------------------------------


def test_cosine_without_warmup() -> None:
    settings = SchedulerSettings(name="cosine", warmup_steps=0, min_lr_ratio=0.1)
    assert lr_factor(0, settings, 100) == pytest.approx(1.0)
    assert lr_factor(50, settings, 100) == pytest.approx((1 + 0.1) / 2)
    assert lr_factor(25, settings, 100) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(100, settings, 100) == pytest.approx(0.1)
    assert lr_factor(1000, settings, 100) == pytest.approx(0.1)
    factors = [lr_factor(step, settings, 100) for step in range(101)]
    assert all(a > b for a, b in itertools.pairwise(factors))


def test_cosine_with_warmup() -> None:
    settings = SchedulerSettings(name="cosine", warmup_steps=10, min_lr_ratio=0.0)
    assert lr_factor(0, settings, 110) == pytest.approx(0.1)  # the first step already learns
    assert lr_factor(4, settings, 110) == pytest.approx(0.5)
    assert lr_factor(9, settings, 110) == pytest.approx(1.0)
    assert lr_factor(10, settings, 110) == pytest.approx(1.0)
    assert lr_factor(60, settings, 110) == pytest.approx(0.5)
    assert lr_factor(110, settings, 110) == pytest.approx(0.0, abs=1e-12)
    # A warmup as long as the run never decays.
    assert lr_factor(5, settings, 5) == pytest.approx(0.6)


def test_constant_and_step() -> None:
    constant = SchedulerSettings(name="constant", warmup_steps=4)
    assert [lr_factor(s, constant, 50) for s in (0, 3, 4, 49, 500)] == pytest.approx([0.25, 1, 1, 1, 1])
    step = SchedulerSettings(name="step", warmup_steps=2, step_size=10, gamma=0.5)
    expected = {0: 0.5, 1: 1.0, 2: 1.0, 11: 1.0, 12: 0.5, 21: 0.5, 22: 0.25, 100: 0.5**9, 1000: 0.5**9}
    for s, value in expected.items():
        assert lr_factor(s, step, 100) == pytest.approx(value), s


def test_schedule_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        lr_factor(-1, SchedulerSettings(), 10)
    with pytest.raises(ValueError):
        lr_factor(0, SchedulerSettings(), 0)


def test_scheduler_scales_each_group_peak(model: torch.nn.Module) -> None:
    optimizer = build_optimizer(model, recipe_settings())
    schedule = SchedulerSettings(name="cosine", warmup_steps=3, min_lr_ratio=0.1)
    scheduler = build_scheduler(optimizer, schedule, 20)
    for step in range(25):
        for group in optimizer.param_groups:
            assert group["lr"] == pytest.approx(group["peak_lr"] * lr_factor(step, schedule, 20)), step
        optimizer.step()
        scheduler.step()


def test_scheduler_state_round_trips() -> None:
    layer = torch.nn.Linear(3, 2)
    settings = OptimizerSettings(lr=1e-3)
    schedule = SchedulerSettings(name="cosine", warmup_steps=2, min_lr_ratio=0.1)

    def run(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list:
        lrs = []
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
            lrs.append([group["lr"] for group in optimizer.param_groups])
        return lrs

    optimizer = build_optimizer(layer, settings)
    scheduler = build_scheduler(optimizer, schedule, 12)
    run(optimizer, scheduler, 5)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    expected = run(optimizer, scheduler, 7)

    state = scheduler.state_dict()
    lambdas = state["lr_lambdas"]
    assert all(isinstance(entry, dict) for entry in lambdas)
    assert not any(callable(value) for entry in lambdas for value in entry.values())

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_optimizer = build_optimizer(layer, settings)
    # A different schedule on resume: the saved one wins, so the run continues exactly.
    resumed_scheduler = build_scheduler(resumed_optimizer, SchedulerSettings(name="constant"), 99)
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed_scheduler.load_state_dict(saved["scheduler"])
    assert resumed_scheduler.last_epoch == 5
    assert run(resumed_optimizer, resumed_scheduler, 7) == expected


# --- step counting ----------------------------------------------------------------------------


def test_total_training_steps() -> None:
    assert total_training_steps(None, 3, 10, 1) == 30
    assert total_training_steps(None, 3, 10, 4) == 9  # 4 + 4 + 2 batches per epoch
    assert total_training_steps(20, 3, 10, 1) == 20
    assert total_training_steps(50, 3, 10, 1) == 30
    assert total_training_steps(7, None, 0, 1) == 7
    with pytest.raises(ValueError, match="max_steps or max_epochs"):
        total_training_steps(None, None, 10, 1)
    with pytest.raises(ValueError):
        total_training_steps(None, 2, 0, 1)
    with pytest.raises(ValueError):
        total_training_steps(None, 2, 10, 0)
