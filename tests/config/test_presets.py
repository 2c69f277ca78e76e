"""Presets and the shipped configs/ files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sam2tool.config.loading import load_settings
from sam2tool.config.presets import DEFAULT_PRESET, PRESETS
from sam2tool.services.config_files import preset_yaml
from tests.conftest import REPO

CONFIGS = REPO / "configs"
SHIPPED = sorted(CONFIGS.glob("*.yaml"))


def test_configs_folder_has_default_and_one_file_per_preset() -> None:
    names = {path.stem for path in SHIPPED}
    assert names == {"default", *PRESETS}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_is_what_init_config_writes(path: Path) -> None:
    preset = DEFAULT_PRESET if path.stem == "default" else path.stem
    assert path.read_text(encoding="utf-8") == preset_yaml(preset), (
        f"{path} is stale; regenerate it with `sam2tool init-config {path.relative_to(REPO)} --preset {preset} --force`"
    )


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_loads_with_the_preset_values(path: Path) -> None:
    settings = load_settings(path)
    preset = DEFAULT_PRESET if path.stem == "default" else path.stem
    for section, values in PRESETS[preset].values.items():
        for key, value in values.items():
            assert getattr(getattr(settings, section), key) == value, f"{section}.{key}"


def test_every_shipped_config_validates_with_the_real_executable() -> None:
    executable = shutil.which("sam2tool") or str(Path(sys.executable).parent / "sam2tool")
    result = subprocess.run(
        [executable, "validate-config", "--json", *map(str, SHIPPED)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"ok": true' in result.stdout


def test_mose_finetune_reproduces_the_official_recipe() -> None:
    settings = load_settings(CONFIGS / "mose_finetune.yaml")
    assert (settings.model.version, settings.model.size, settings.model.checkpoint) == (
        "sam2.1",
        "base_plus",
        "official",
    )
    assert settings.dataset.image_size == 1024
    assert settings.dataset.video_clip_length == 8
    assert settings.dataset.max_num_objects == 3
    assert settings.optimizer.name == "adamw"
    assert settings.optimizer.lr == 5e-6
    assert settings.optimizer.vision_lr == 3e-6
    assert settings.optimizer.layer_decay == 0.9
    assert settings.optimizer.weight_decay == 0.1
    assert settings.trainer.gradient_clip_val == 0.1
    assert settings.trainer.precision == "bf16-mixed"
    assert settings.model.drop_path_rate == 0.1
    assert settings.scheduler.name == "cosine" and settings.scheduler.min_lr_ratio == 0.1
    assert (
        settings.loss.weight_mask,
        settings.loss.weight_dice,
        settings.loss.weight_iou,
        settings.loss.weight_class,
    ) == (20, 1, 1, 1)


def test_mose_recipe_matches_metas_training_config() -> None:
    """Cross-check against the recipe file shipped inside the sam2 package."""
    from importlib import resources

    import yaml

    text = resources.files("sam2").joinpath("configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml").read_text()
    official = yaml.safe_load(text)
    scratch = official["scratch"]
    settings = load_settings(CONFIGS / "mose_finetune.yaml")
    assert settings.dataset.image_size == scratch["resolution"]
    assert settings.dataset.video_clip_length == scratch["num_frames"]
    assert settings.dataset.max_num_objects == scratch["max_num_objects"]
    assert settings.optimizer.lr == scratch["base_lr"]
    assert settings.optimizer.vision_lr == scratch["vision_lr"]
    assert settings.trainer.max_epochs == scratch["num_epochs"]
    optim = official["trainer"]["optim"]
    assert settings.trainer.gradient_clip_val == optim["gradient_clip"]["max_norm"]
    assert settings.optimizer.layer_decay == optim["param_group_modifiers"][0]["layer_decay_value"]
    assert optim["amp"]["amp_dtype"] == "bfloat16" and settings.trainer.precision == "bf16-mixed"
    assert settings.model.drop_path_rate == official["trainer"]["model"]["image_encoder"]["trunk"]["drop_path_rate"]
    weights = official["trainer"]["loss"]["all"]["weight_dict"]
    assert (weights["loss_mask"], weights["loss_dice"], weights["loss_iou"], weights["loss_class"]) == (
        settings.loss.weight_mask,
        settings.loss.weight_dice,
        settings.loss.weight_iou,
        settings.loss.weight_class,
    )


def test_configuration_reference_is_current() -> None:
    from sam2tool.config.reference import render_reference

    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render_reference(), (
        "docs/configuration.md is stale; regenerate it with "
        "`python -m sam2tool.config.reference > docs/configuration.md`"
    )
