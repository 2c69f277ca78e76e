"""`sam2tool export --format hf`: transformers loads hf/ and tracks like `predict-video`; what it refuses.

The tracking comparison exports the pretrained base packaged with sam2tool (micro, 128 px), whose
masks are not empty, and tracks generated videos of its own kind with 1 and 3 objects.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.config.registry import REGISTRY, get_spec
from sam2tool.export.hf_export import track_with_transformers
from sam2tool.models.build import (
    STREAMING_PREDICTOR,
    VIDEO_PREDICTOR_OVERRIDES,
    compose_model_config,
    instantiate_model,
)
from sam2tool.models.packaged import packaged_checkpoint
from tests.conftest import BASE_SIZE, OLD_MICRO, REPO, old_micro

SIZE = BASE_SIZE
#: The packaged base (``model.checkpoint: official``) at its own size.
BASE_CONFIG = REPO / "configs" / "micro.yaml"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def tracker(size: str, version: str, image_size: int, *overrides: str) -> torch.nn.Module:
    """sam2's video predictor as predict-video builds it, random weights."""
    extra = [f"++model._target_={STREAMING_PREDICTOR}", *VIDEO_PREDICTOR_OVERRIDES, *overrides]
    config = compose_model_config(get_spec(version, size), image_size, extra_overrides=extra)  # type: ignore[arg-type]
    return instantiate_model(config).eval()


@pytest.fixture(scope="module")
def base() -> tuple[Path, Path]:
    """The packaged base and a config naming it at its 128 px."""
    return packaged_checkpoint(get_spec("sam2.1", "micro")), BASE_CONFIG


@pytest.fixture(scope="module")
def exported(base: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    pytest.importorskip("transformers")
    checkpoint, config = base
    out = tmp_path_factory.mktemp("hf") / "export"
    code, output = invoke("export", str(checkpoint), "-o", str(out), "-f", "hf", "--config", str(config))
    assert code == 0, output
    return out, output


#: Frames of the generated video that both trackers follow.
FRAMES = 12


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A generated video of the base's own kind with three objects, and its first frame's label map."""
    from sam2tool.data.formats.synthetic_render import render_video

    folder = tmp_path_factory.mktemp("video") / "frames"
    folder.mkdir()
    images, labels = render_video(0, FRAMES, SIZE, seed=3, objects=(3, 3))
    for t, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{t:05d}.jpg", quality=95)
    assert sorted(np.unique(labels[0])) == [0, 1, 2, 3]
    return folder, labels[0]


def transformers_labels(folder: Path, frames: Path, prompts: dict[int, Any]) -> list[np.ndarray]:
    """Label maps from transformers' video API, made as predict-video makes them (highest positive logit)."""
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    model = Sam2VideoModel.from_pretrained(str(folder)).eval()
    processor = Sam2VideoProcessor.from_pretrained(str(folder))
    video = [np.array(Image.open(p).convert("RGB")) for p in sorted(frames.iterdir())]
    labels = []
    for scores in track_with_transformers(model, processor, video, prompts):
        label = np.asarray(list(prompts), dtype=np.uint8)[scores.argmax(axis=0)]
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


def meta_memory_for_mask_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make transformers encode a mask-prompted frame's memory as Meta's predictor does.

    transformers (4.56 to 5.24 at least) encodes it from the input mask at full resolution; Meta's predictor (and
    so predict-video) from the frame's predicted low-resolution mask, upsampled.
    """
    from transformers.models.sam2_video import modeling_sam2_video

    original = modeling_sam2_video.Sam2VideoModel._use_mask_as_output

    def from_low_resolution(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = original(self, *args, **kwargs)
        size = out.high_res_masks.shape[-2:]
        out.high_res_masks = torch.nn.functional.interpolate(out.pred_masks.float(), size=size, mode="bilinear")
        return out

    monkeypatch.setattr(modeling_sam2_video.Sam2VideoModel, "_use_mask_as_output", from_low_resolution)


def predict_video_labels(base: tuple[Path, Path], frames: Path, output: Path, *prompt: str) -> list[np.ndarray]:
    """The label maps `sam2tool predict-video` writes for ``frames`` with the packaged base."""
    checkpoint, config = base
    code, printed = invoke(
        "predict-video", str(frames), "-o", str(output), "--config", str(config),
        "--checkpoint", str(checkpoint), *prompt, "--device", "cpu",
    )  # fmt: skip
    assert code == 0, printed
    return [np.array(Image.open(p)) for p in sorted(output.glob("*.png"))]


def deepest_point(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the pixel deepest inside ``mask``: a click no tracker can read as the background."""
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(depth.argmax()), depth.shape)
    return int(x), int(y)


def worst_agreement(ours: list[np.ndarray], theirs: list[np.ndarray], objects: int) -> float:
    """The smallest share of equal pixels of one object's binary mask on one frame."""
    assert len(ours) == len(theirs) == FRAMES
    return min(
        float(((mine == k) == (other == k)).mean())
        for mine, other in zip(ours, theirs, strict=True)
        for k in range(1, objects + 1)
    )


@pytest.mark.parametrize("objects", [1, 3])
def test_transformers_tracks_like_predict_video(
    exported: tuple[Path, str],
    base: tuple[Path, Path],
    video: tuple[Path, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    objects: int,
) -> None:
    """The pretrained base, prompted as it was trained (each object's mask on frame 0).

    The masks agree to >= 99.9 % per object and frame once transformers encodes the prompted
    frame's memory as Meta does; as transformers ships, up to 0.5 % of pixels differ (the first
    frames after the prompt, then less).
    """
    out, _ = exported
    frames, first = video
    first = np.where(first <= objects, first, 0).astype(np.uint8)
    Image.fromarray(first).save(tmp_path / "prompt.png")
    ours = predict_video_labels(base, frames, tmp_path / "ours", "--mask", str(tmp_path / "prompt.png"))
    # The comparison is not vacuous: every object is tracked on every frame.
    assert all((mine == k).sum() > 50 for mine in ours for k in range(1, objects + 1))
    masks = {k: first == k for k in range(1, objects + 1)}
    assert worst_agreement(ours, transformers_labels(out / "hf", frames, masks), objects) >= 0.995
    meta_memory_for_mask_prompts(monkeypatch)
    assert worst_agreement(ours, transformers_labels(out / "hf", frames, masks), objects) >= 0.999


def test_transformers_tracks_clicks_like_predict_video(
    exported: tuple[Path, str], base: tuple[Path, Path], video: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    """A click: transformers and predict-video agree to >= 99.9 % with no change to either."""
    out, _ = exported
    frames, first = video
    x, y = deepest_point(first == 1)
    ours = predict_video_labels(base, frames, tmp_path / "ours", "--point", f"{x},{y}")
    assert all((mine == 1).any() for mine in ours)
    theirs = transformers_labels(out / "hf", frames, {1: (float(x), float(y))})
    assert worst_agreement(ours, theirs, 1) >= 0.999


def test_missing_transformers_exits_2_before_writing(
    base: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name == "transformers":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    monkeypatch.setattr(importlib.metadata, "version", version)
    checkpoint, config = base
    code, output = invoke(
        "export", str(checkpoint), "-o", str(tmp_path / "e"), "-f", "sam2,hf", "--config", str(config)
    )
    assert code == 2
    assert len(output.strip().splitlines()) == 1 and "pip install 'sam2tool[hf]'" in output
    assert not (tmp_path / "e").exists()


def test_an_architecture_transformers_lacks_is_refused_by_name_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The micro of sam2tool 0.1 (a 16-channel memory, 64-wide hidden state) has no transformers form."""
    pytest.importorskip("transformers")
    from sam2tool.config import registry

    spec = registry.get_spec("sam2.1", "micro")
    monkeypatch.setitem(registry.REGISTRY, ("sam2.1", "micro"), replace(spec, overrides=OLD_MICRO))  # for export
    model = old_micro(SIZE)
    assert model.hidden_dim == 64 and model.mem_dim == 16
    torch.save({"model": model.state_dict()}, tmp_path / "old-micro.pt")
    config = tmp_path / "micro.yaml"
    config.write_text(f"model:\n  size: micro\n  checkpoint: null\ndataset:\n  image_size: {SIZE}\n")
    out = tmp_path / "e"
    old = str(tmp_path / "old-micro.pt")
    code, output = invoke("export", old, "-o", str(out), "-f", "sam2,hf", "--config", str(config))
    assert code == 2, output
    assert "SAM 2.1 micro cannot be expressed by transformers" in output
    assert "kv_in_dim = 16 (transformers: 64" in output
    assert "memory width = hidden width" not in output
    assert not out.exists()


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
    # A memory as wide as the hidden state: transformers fails on object pointers it does not split.
    wide = [o.replace("=16", "=64") if "kv_in_dim" in o or "memory_encoder." in o else o for o in OLD_MICRO]
    same = "\n".join(unsupported(tracker("tiny", "sam2.1", 64, *wide)))
    assert "memory width = hidden width = 64" in same and "kv_in_dim" not in same


#: The image size each registry row is checked at: every size-dependent field follows it.
CHECK_SIZES = {"tiny": 96, "small": 160, "base_plus": 256, "large": 512, "micro": 192}


@pytest.mark.parametrize(
    ("version", "size"),
    [pytest.param(version, size, marks=pytest.mark.slow if size == "large" else []) for version, size in REGISTRY],
)
def test_every_size_and_version_maps_strictly(version: str, size: str) -> None:
    """Config and weights of each registry row load strictly, with consistent size-dependent fields."""
    pytest.importorskip("transformers")
    image_size = CHECK_SIZES[size] + (32 if version == "sam2" else 0)
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


def test_the_readme_lines_load_and_run_the_export(
    exported: tuple[Path, str], video: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's Python lines, as written (the click moved onto an object, nothing pushed)."""
    readme = (REPO / "README.md").read_text()
    (block,) = [b.split("\n", 1)[1] for b in readme.split("```python")[1:] if "Sam2VideoModel" in b.split("```")[0]]
    code = block.split("```")[0]
    lines = [line for line in code.splitlines() if "push_to_hub" not in line]
    assert len(lines) < len(code.splitlines())  # the README shows how to publish
    out, _ = exported
    folder, first = video
    x, y = deepest_point(first == 1)
    frames = [np.array(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]
    monkeypatch.chdir(out.parent)
    out.rename(out.parent / "exported")
    try:
        namespace = {"frames": frames}
        assert "[[[[420, 310]]]]" in code  # the README's click, moved onto object 1 here
        exec("\n".join(lines).replace("[[[[420, 310]]]]", f"[[[[{x}, {y}]]]]"), namespace)
    finally:
        (out.parent / "exported").rename(out)
    masks = namespace["masks"]
    assert len(masks) == FRAMES and masks[0].shape[-2:] == (SIZE, SIZE)
    assert all(bool(m.any()) for m in masks)
