"""Field and cross-field checks of the settings schema."""

from __future__ import annotations

import pytest

from sam2tool.config.loading import load_settings
from sam2tool.config.problems import ConfigError


def rejected(*overrides: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(None, list(overrides))
    return {p.key: p.message for p in excinfo.value.problems}


@pytest.mark.parametrize("size", [64, 96, 128, 512, 1024])
def test_valid_image_sizes(size: int) -> None:
    assert load_settings(None, [f"dataset.image_size={size}"]).dataset.image_size == size


@pytest.mark.parametrize(
    ("size", "hint"), [(500, "use 480 or 512"), (80, "use 64 or 96"), (32, "at least 64"), (48, "at least 64")]
)
def test_invalid_image_sizes(size: int, hint: str) -> None:
    assert hint in rejected(f"dataset.image_size={size}")["dataset.image_size"]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("dataset.video_clip_length=0", "dataset.video_clip_length"),
        ("dataset.batch_size=0", "dataset.batch_size"),
        ("dataset.max_num_objects=0", "dataset.max_num_objects"),
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.lr=-1e-4", "optimizer.lr"),
        ("optimizer.layer_decay=1.5", "optimizer.layer_decay"),
        ("optimizer.betas=[0.9, 1.0]", "optimizer.betas"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("trainer.val_check_interval=1.5", "trainer.val_check_interval"),
        ("trainer.precision=fp8", "trainer.precision"),
        ("trainer.devices=0", "trainer.devices"),
        ("scheduler.name=linear", "scheduler.name"),
        ("model.version=sam3", "model.version"),
        ("model.trainable_modules=[]", "model.trainable_modules"),
        ("model.trainable_modules=[mask_decoder]", "model.trainable_modules"),
        ("model.drop_path_rate=1.0", "model.drop_path_rate"),
        ("loss.focal_alpha=2", "loss.focal_alpha"),
    ],
)
def test_out_of_range_values_are_rejected(override: str, key: str) -> None:
    assert key in rejected(override)


def test_precision_given_as_integer_in_yaml_is_accepted() -> None:
    assert load_settings(None, ["trainer.precision=32"]).trainer.precision == "32"


def test_devices_accept_lightning_forms() -> None:
    assert load_settings(None, ["trainer.devices=0,1"]).trainer.devices == [0, 1]
    assert load_settings(None, ["trainer.devices=-1"]).trainer.devices == -1
    assert load_settings(None, ["trainer.devices=[2]"]).trainer.devices == [2]


def test_warmup_must_be_shorter_than_training() -> None:
    message = rejected("scheduler.warmup_steps=100", "trainer.max_steps=100")["scheduler.warmup_steps"]
    assert "not shorter than trainer.max_steps=100" in message
    assert load_settings(None, ["scheduler.warmup_steps=99", "trainer.max_steps=100"]).scheduler.warmup_steps == 99


def test_training_needs_a_length() -> None:
    assert "trainer.max_steps" in rejected("trainer.max_epochs=null")["trainer.max_epochs"]


def test_half_precision_on_cpu_is_refused() -> None:
    assert (
        "does not run on the CPU"
        in rejected("trainer.accelerator=cpu", "trainer.precision=16-mixed")["trainer.precision"]
    )


def test_official_checkpoint_must_match_model() -> None:
    message = rejected("model.size=tiny", "model.checkpoint=sam2.1_hiera_large")["model.checkpoint"]
    assert "SAM 2.1 large checkpoint" in message and "model.size=large" in message
    settings = load_settings(None, ["model.size=large", "model.checkpoint=sam2.1_hiera_large.pt"])
    assert settings.model.checkpoint == "sam2.1_hiera_large.pt"


def test_official_micro_is_the_packaged_base_and_sam2_micro_has_none() -> None:
    assert load_settings(None, ["model.size=micro"]).model.checkpoint == "official"
    message = rejected("model.size=micro", "model.version=sam2")["model.checkpoint"]
    assert "no official checkpoint for sam2 micro" in message and "model.version=sam2.1" in message
    assert load_settings(None, ["model.size=micro", "model.checkpoint=null"]).model.checkpoint is None


def test_all_loss_weights_zero_is_refused() -> None:
    problems = rejected("loss.weight_mask=0", "loss.weight_dice=0", "loss.weight_iou=0", "loss.weight_class=0")
    assert "nothing would be learned" in problems["loss.weight_mask"]


def test_cross_field_problem_shows_value_and_source() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(None, ["scheduler.warmup_steps=100", "trainer.max_steps=10"])
    (problem,) = excinfo.value.problems
    assert problem.source == "command line"
    assert problem.value == 100


def test_every_field_is_documented() -> None:
    from sam2tool.config.schema import Sam2ToolSettings

    for section_name, section in Sam2ToolSettings.model_fields.items():
        section_cls = section.annotation
        assert section_cls is not None and section_cls.__doc__, section_name
        for name, field in section_cls.model_fields.items():  # type: ignore[union-attr]
            assert field.description and len(field.description) > 10, f"{section_name}.{name} has no docstring"


def test_micro_with_an_official_name_gets_a_valid_suggestion() -> None:
    message = rejected("model.size=micro", "model.checkpoint=sam2.1_hiera_tiny")["model.checkpoint"]
    assert "set model.version=sam2.1 and model.size=tiny, or use checkpoint 'official'" in message
    message = rejected("model.size=tiny", "model.checkpoint=sam2.1_micro")["model.checkpoint"]
    assert "'sam2.1_micro' is the SAM 2.1 micro checkpoint" in message
