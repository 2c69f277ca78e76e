"""`sam2tool export --format hf`: transformers loads hf/ and tracks like `predict-video`; what it refuses.

sam2tool's micro (the packaged base) has a 16-channel memory, which transformers cannot build (its
memory attention reads 64 channels), so the tracking comparison runs on SAM 2.1 tiny at 128 px with
random weights: every sam2 size other than micro has the 64-channel memory.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.config.registry import REGISTRY, get_spec
from sam2tool.data.layout import FRAMES_DIR, read_split
from sam2tool.export.hf_export import track_with_transformers
from sam2tool.models.build import (
    STREAMING_PREDICTOR,
    VIDEO_PREDICTOR_OVERRIDES,
    compose_model_config,
    instantiate_model,
)
from sam2tool.models.packaged import packaged_checkpoint
from tests.conftest import BASE_SIZE, prepare_synthetic

SIZE = 128
#: Clicks (x, y) on the first frame, one per object.
CLICKS = {1: (40, 64), 2: (90, 36), 3: (76, 104)}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def tracker(size: str, version: str, image_size: int, *overrides: str) -> torch.nn.Module:
    """sam2's video predictor as predict-video builds it, random weights."""
    extra = [f"++model._target_={STREAMING_PREDICTOR}", *VIDEO_PREDICTOR_OVERRIDES, *overrides]
    config = compose_model_config(get_spec(version, size), image_size, extra_overrides=extra)  # type: ignore[arg-type]
    return instantiate_model(config).eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A SAM 2.1 tiny checkpoint with random weights and a config naming it at 128 px."""
    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = instantiate_model(compose_model_config(get_spec("sam2.1", "tiny"), SIZE))
    torch.save({"model": model.state_dict()}, root / "tiny.pt")
    config = root / "tiny.yaml"
    config.write_text(f"model:\n  size: tiny\n  checkpoint: null\ndataset:\n  image_size: {SIZE}\n")
    return root / "tiny.pt", config


@pytest.fixture(scope="module")
def exported(tiny: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    pytest.importorskip("transformers")
    checkpoint, config = tiny
    out = tmp_path_factory.mktemp("hf") / "export"
    code, output = invoke("export", str(checkpoint), "-o", str(out), "-f", "hf", "--config", str(config))
    assert code == 0, output
    return out, output


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = prepare_synthetic(tmp_path_factory.mktemp("data") / "d", videos=1, frames=6, size=SIZE, val_fraction=0)
    return data / FRAMES_DIR / read_split(data, "train")[0]


def transformers_labels(folder: Path, frames: Path, clicks: dict[int, tuple[int, int]]) -> list[np.ndarray]:
    """Label maps from transformers' video API, made as predict-video makes them (highest positive logit)."""
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    model = Sam2VideoModel.from_pretrained(str(folder)).eval()
    processor = Sam2VideoProcessor.from_pretrained(str(folder))
    video = [np.array(Image.open(p).convert("RGB")) for p in sorted(frames.iterdir())]
    labels = []
    for scores in track_with_transformers(model, processor, video, clicks):
        label = np.asarray(list(clicks), dtype=np.uint8)[scores.argmax(axis=0)]
        label[scores.max(axis=0) <= 0] = 0
        labels.append(label)
    return labels


def test_hf_folder_loads_and_is_listed_in_the_card(exported: tuple[Path, str]) -> None:
    import transformers

    out, output = exported
    assert sorted(p.name for p in out.iterdir()) == ["hf", "model_card.json"]
    card = json.loads((out / "model_card.json").read_text())
    hf_files = sorted(p.name for p in (out / "hf").iterdir())
    assert {"config.json", "model.safetensors"} <= set(hf_files)
    assert sorted(name for name in card["files"]) == [f"hf/{name}" for name in hf_files]
    assert card["hf"]["transformers_version"] == transformers.__version__
    assert card["hf"]["check"]["min_agreement"] >= 0.999
    assert "Sam2VideoModel.from_pretrained" in card["usage"]["hf"]
    assert "Sam2VideoModel and Sam2VideoProcessor.from_pretrained" in output
    # The size-dependent fields agree with each other and with the image size.
    config = json.loads((out / "hf" / "config.json").read_text())
    assert config["image_size"] == config["prompt_encoder_config"]["image_size"] == SIZE
    assert config["vision_config"]["backbone_feature_sizes"] == [[SIZE // 4] * 2, [SIZE // 8] * 2, [SIZE // 16] * 2]
    assert config["memory_attention_rope_feat_sizes"] == [SIZE // 16] * 2
    processor = transformers.Sam2VideoProcessor.from_pretrained(str(out / "hf"))
    assert processor.image_processor.size["height"] == processor.video_processor.size["height"] == SIZE
    assert processor.image_processor.mask_size["height"] == SIZE // 4


@pytest.mark.parametrize("objects", [pytest.param(1, marks=pytest.mark.slow), 3])
def test_transformers_tracks_like_predict_video(
    exported: tuple[Path, str], tiny: tuple[Path, Path], frames: Path, tmp_path: Path, objects: int
) -> None:
    out, _ = exported
    checkpoint, config = tiny
    clicks = {k: CLICKS[k] for k in list(CLICKS)[:objects]}
    prompts = [{"frame": 0, "obj_id": k, "points": [list(xy)], "labels": [1]} for k, xy in clicks.items()]
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    code, output = invoke(
        "predict-video", str(frames), "-o", str(tmp_path / "ours"), "--config", str(config),
        "--checkpoint", str(checkpoint), "--prompts", str(tmp_path / "prompts.json"), "--device", "cpu",
    )  # fmt: skip
    assert code == 0, output
    ours = [np.array(Image.open(p)) for p in sorted((tmp_path / "ours").glob("*.png"))]
    theirs = transformers_labels(out / "hf", frames, clicks)
    assert len(ours) == len(theirs) == 6
    for t, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
        for k in clicks:
            agreement = ((mine == k) == (other == k)).mean()
            assert agreement >= 0.999, (t, k, agreement)
    assert all((mine > 0).any() for mine in ours)  # the comparison is not vacuous


def test_missing_transformers_exits_2_before_writing(
    tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name == "transformers":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    monkeypatch.setattr(importlib.metadata, "version", version)
    checkpoint, config = tiny
    code, output = invoke(
        "export", str(checkpoint), "-o", str(tmp_path / "e"), "-f", "sam2,hf", "--config", str(config)
    )
    assert code == 2
    assert len(output.strip().splitlines()) == 1 and "pip install 'sam2tool[hf]'" in output
    assert not (tmp_path / "e").exists()


def test_micro_is_refused_by_name_before_writing(tmp_path: Path, write_file) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("transformers")
    base = packaged_checkpoint(get_spec("sam2.1", "micro"))
    config = write_file(
        "micro.yaml", f"model:\n  size: micro\n  checkpoint: null\ndataset:\n  image_size: {BASE_SIZE}\n"
    )
    code, output = invoke("export", str(base), "-o", str(tmp_path / "e"), "-f", "sam2,hf", "--config", str(config))
    assert code == 2, output
    assert "SAM 2.1 micro cannot be expressed by transformers" in output
    assert "kv_in_dim = 16 (transformers: 64" in output
    assert not (tmp_path / "e").exists()


def test_settings_transformers_lacks_are_named() -> None:
    from sam2tool.export.hf_export import unsupported

    assert unsupported(tracker("tiny", "sam2.1", 64)) == []
    assert unsupported(tracker("tiny", "sam2", 64)) == []
    model = tracker(
        "tiny",
        "sam2.1",
        64,
        "++model.non_overlap_masks_for_mem_enc=true",
        "++model.use_signed_tpos_enc_to_obj_ptrs=false",
        "++model.image_encoder.neck.fpn_interp_model=bilinear",
    )
    problems = "\n".join(unsupported(model))
    assert "non_overlap_masks_for_mem_enc = True (transformers: False)" in problems
    assert "use_signed_tpos_enc_to_obj_ptrs = False" in problems
    assert "image_encoder.neck.fpn_interp_model = 'bilinear'" in problems


@pytest.mark.parametrize(
    ("version", "size", "image_size"),
    [
        pytest.param(version, size, image_size, marks=pytest.mark.slow if size == "large" else [])
        for (version, size), image_size in zip(
            [key for key in REGISTRY if key[1] != "micro"], [96, 160, 256, 512, 128, 224, 320, 1024], strict=True
        )
    ],
)
def test_every_size_and_version_maps_strictly(version: str, size: str, image_size: int) -> None:
    """Config and weights of each non-micro registry row load strictly, with consistent size-dependent fields."""
    pytest.importorskip("transformers")
    from sam2tool.export.hf_export import build_hf_model, hf_config, unsupported

    model = tracker(size, version, image_size)
    assert unsupported(model) == []
    config = hf_config(model, image_size)
    hf = build_hf_model(config, model.state_dict())  # strict: every weight has exactly one counterpart
    assert hf.config.enable_occlusion_spatial_embedding == (version == "sam2.1")
    assert hf.config.enable_temporal_pos_encoding_for_object_pointers == (version == "sam2.1")
    grid = image_size // 16
    assert hf.config.memory_attention_rope_feat_sizes == [grid, grid]
    assert hf.config.vision_config.backbone_feature_sizes[-1] == [grid, grid]
    assert hf.config.prompt_encoder_config.image_size == hf.config.image_size == image_size
    assert sum(p.numel() for p in hf.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.slow
def test_sam2_version_at_another_size_tracks_like_sam2(tmp_path: Path) -> None:
    """SAM 2 (not 2.1) tiny at 160 px: the export's own probe check passes."""
    pytest.importorskip("transformers")
    from sam2tool.export.hf_export import write_hf

    torch.manual_seed(1)
    report = write_hf(tracker("tiny", "sam2", 160), 160, tmp_path / "hf", torch.float32)
    assert min(report.agreement) >= 0.999
