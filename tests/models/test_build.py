"""Building real SAM 2 models from settings (random weights, tiny sizes)."""

from __future__ import annotations

import logging

import pytest
import torch

from sam2tool.config.problems import ConfigError
from sam2tool.config.registry import get_spec
from sam2tool.config.schema import ModelSettings
from sam2tool.models.build import apply_trainable_modules, build_model, compose_model_config
from tests.sam2_probe import two_frame_outputs


@pytest.mark.parametrize("image_size", [64, 96, 128])
def test_micro_builds_and_tracks_at_small_sizes(micro_settings: ModelSettings, image_size: int) -> None:
    built = build_model(micro_settings, image_size)
    assert type(built.model).__name__ == "SAM2Base"
    assert built.model.image_size == image_size
    assert built.total_parameters == 2_578_082  # docs/models.md
    assert built.checkpoint is None
    masks = two_frame_outputs(built.model, image_size)[0]
    assert masks.shape[-1] == image_size // 4


@pytest.mark.parametrize(("image_size", "grid"), [(512, 32), (1024, 64), (256, 16)])
def test_rope_feature_sizes_follow_image_size(image_size: int, grid: int) -> None:
    config = compose_model_config(get_spec("sam2.1", "tiny"), image_size)
    attention = config["model"]["memory_attention"]["layer"]
    assert attention["self_attention"]["feat_sizes"] == [grid, grid]
    assert attention["cross_attention"]["feat_sizes"] == [grid, grid]
    assert config["model"]["image_size"] == image_size


def test_tiny_at_512_tracks() -> None:
    # RoPE feat_sizes must be [32, 32] at 512 px, or memory attention fails on the second frame.
    built = build_model(ModelSettings(size="tiny", checkpoint=None), 512)
    assert built.total_parameters == 38_962_498
    outputs = two_frame_outputs(built.model, 512)
    assert outputs[3].shape[-1] == 128  # second frame's mask, produced through memory attention


def test_sam2_and_sam21_differ_where_they_should() -> None:
    v2 = build_model(ModelSettings(size="micro", version="sam2", checkpoint=None), 64).model
    v21 = build_model(ModelSettings(size="micro", version="sam2.1", checkpoint=None), 64).model
    assert "no_obj_embed_spatial" in v21.state_dict()
    assert "no_obj_embed_spatial" not in v2.state_dict()


def test_drop_path_rate_reaches_the_trunk() -> None:
    built = build_model(ModelSettings(size="micro", checkpoint=None, drop_path_rate=0.2), 64)
    rates = [
        block.drop_path.drop_prob
        for block in built.model.image_encoder.trunk.blocks
        if hasattr(block.drop_path, "drop_prob")
    ]
    assert rates and max(rates) == pytest.approx(0.2)
    assert built.config["model"]["image_encoder"]["trunk"]["drop_path_rate"] == 0.2


def test_target_class_override() -> None:
    built = build_model(
        ModelSettings(size="micro", checkpoint=None), 64, target="sam2.sam2_video_predictor.SAM2VideoPredictor"
    )
    assert type(built.model).__name__ == "SAM2VideoPredictor"


def test_trainable_modules_freeze_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    settings = ModelSettings(size="micro", checkpoint=None, trainable_modules=["sam_mask_decoder", "memory_attention"])
    with caplog.at_level(logging.INFO, logger="sam2tool"):
        built = build_model(settings, 64)
    model = built.model
    for name, parameter in model.named_parameters():
        expected = name.startswith(("sam_mask_decoder.", "memory_attention."))
        assert parameter.requires_grad == expected, name
    expected_count = sum(
        p.numel() for n, p in model.named_parameters() if n.startswith(("sam_mask_decoder.", "memory_attention."))
    )
    assert built.trainable_parameters == expected_count
    assert f"Trainable parameters: {expected_count:,} of {built.total_parameters:,}" in caplog.text


def test_trainable_modules_accept_nested_prefixes_and_all(micro_settings: ModelSettings) -> None:
    model = build_model(micro_settings, 64).model
    trainable, total = apply_trainable_modules(model, ["image_encoder.trunk"])
    assert trainable == sum(p.numel() for p in model.image_encoder.trunk.parameters())
    assert not any(p.requires_grad for p in model.image_encoder.neck.parameters())
    assert apply_trainable_modules(model, ["all"]) == (total, total)


def test_trainable_module_that_matches_nothing(micro_settings: ModelSettings) -> None:
    model = build_model(micro_settings, 64).model
    with pytest.raises(ConfigError, match=r"'image_encoder\.trunk\.blocks\.99' match no parameter") as excinfo:
        apply_trainable_modules(model, ["image_encoder.trunk.blocks.99"])
    assert excinfo.value.problems[0].key == "model.trainable_modules"


def test_sam2_model_lacks_sam21_only_parameters() -> None:
    v2 = build_model(ModelSettings(size="micro", version="sam2", checkpoint=None), 64).model
    with pytest.raises(ConfigError, match="no_obj_embed_spatial"):
        apply_trainable_modules(v2, ["no_obj_embed_spatial"])


def test_build_is_deterministic_under_a_seed(micro_settings: ModelSettings) -> None:
    torch.manual_seed(0)
    a = build_model(micro_settings, 64).model.state_dict()
    torch.manual_seed(0)
    b = build_model(micro_settings, 64).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["tiny", "small", "base_plus", "large"])
@pytest.mark.parametrize("version", ["sam2", "sam2.1"])
def test_every_official_architecture_tracks_at_1024(version: str, size: str) -> None:
    built = build_model(ModelSettings(version=version, size=size, checkpoint=None), 1024)  # type: ignore[arg-type]
    outputs = two_frame_outputs(built.model, 1024)
    assert outputs[3].shape[-2:] == (256, 256)
    assert all(torch.isfinite(t).all() for t in outputs)


@pytest.mark.gpu
def test_micro_on_cuda_matches_cpu_and_runs_in_bf16(micro_settings: ModelSettings) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    torch.manual_seed(0)
    model = build_model(micro_settings, 128).model
    cpu = two_frame_outputs(model, 128)
    gpu = two_frame_outputs(model.cuda(), 128, device="cuda")
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-3, atol=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = two_frame_outputs(model, 128, device="cuda")
    assert all(torch.isfinite(t.float()).all() for t in bf16)
