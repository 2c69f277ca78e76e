"""`sam2tool export`: files the official sam2 package loads, safetensors, dtypes, model card, errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.data.layout import FRAMES_DIR, MANIFEST_FILE, MASKS_DIR, read_split
from sam2tool.models.build import build_model
from sam2tool.models.checkpoints import read_state_dict
from sam2tool.models.onnx_bundle import GRAPH_FILES
from sam2tool.models.onnx_bundle import MANIFEST_FILE as ONNX_MANIFEST
from sam2tool.services.train import TrainResult, train
from tests.conftest import BASE_SIZE, micro_run_settings
from tests.conftest import RUN_SIZE as SIZE


@pytest.fixture(scope="module")
def data(base_data: Path) -> Path:
    return base_data


@pytest.fixture(scope="module")
def run(fine_tuned_base: tuple[TrainResult, Sam2ToolSettings]) -> tuple[TrainResult, Sam2ToolSettings]:
    """Two fine-tuning steps of the packaged base: its checkpoint tracks, so comparing masks means something."""
    return fine_tuned_base


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def predicted_masks(data: Path, out: Path, *model: str) -> list[np.ndarray]:
    """The label maps `predict-video` writes for the first validation video, prompted with its first mask."""
    video = read_split(data, "val")[0]
    frames, mask = data / FRAMES_DIR / video, data / MASKS_DIR / video / "00000.png"
    code, output = invoke("predict-video", str(frames), "-o", str(out), "--mask", str(mask), *model)
    assert code == 0, output
    return [np.array(Image.open(p)) for p in sorted(out.glob("*.png"))]


def test_sam2_export_loads_in_the_official_predictor_and_tracks_like_predict_video(
    run: tuple[TrainResult, Sam2ToolSettings], data: Path, tmp_path: Path
) -> None:
    from sam2.build_sam import build_sam2_video_predictor

    result, _ = run
    code, output = invoke("export", str(result.last_checkpoint), "-o", str(tmp_path / "export"))
    assert code == 0, output
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["model.pt", "model.yaml", "model_card.json"]
    assert "build_sam2 (official) loads them strictly" in output
    saved = torch.load(tmp_path / "export" / "model.pt", map_location="cpu", weights_only=True)
    assert list(saved) == ["model"]  # no optimizer state, no training metadata
    assert saved["model"].keys() == read_state_dict(result.last_checkpoint).keys()

    video = read_split(data, "val")[0]
    frames, first_mask = data / FRAMES_DIR / video, data / MASKS_DIR / video / "00000.png"
    config = result.run_dir / "config.yaml"
    ours = tmp_path / "ours"
    code, output = invoke(
        "predict-video", str(frames), "-o", str(ours), "--config", str(config),
        "--checkpoint", str(result.last_checkpoint), "--mask", str(first_mask), "--device", "cpu",
    )  # fmt: skip
    assert code == 0, output

    predictor = build_sam2_video_predictor(
        "/" + os.path.abspath(tmp_path / "export" / "model.yaml"), str(tmp_path / "export" / "model.pt"), device="cpu"
    )
    state = predictor.init_state(str(frames))
    labels = np.array(Image.open(first_mask))
    ids = [int(i) for i in np.unique(labels) if 0 < i < 255]
    for obj_id in ids:
        predictor.add_new_mask(state, frame_idx=0, obj_id=obj_id, mask=labels == obj_id)
    compared = 0
    for t, obj_ids, logits in predictor.propagate_in_video(state):
        scores = logits[:, 0].numpy()
        expected = np.asarray(obj_ids, dtype=np.uint8)[scores.argmax(axis=0)]
        expected[scores.max(axis=0) <= 0] = 0
        mine = np.array(Image.open(ours / f"{t:05d}.png"))
        assert (mine != expected).mean() < 1e-3, f"frame {t}"
        compared += int(t > 0 and (expected > 0).any())
    assert compared >= 5  # the masks are not empty: the comparison is not vacuous


def test_safetensors_and_half_precision(run: tuple[TrainResult, Sam2ToolSettings], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    result, _ = run
    full, half = tmp_path / "fp32", tmp_path / "bf16"
    for folder, dtype in ((full, "fp32"), (half, "bf16")):
        code, output = invoke(
            "export", str(result.last_checkpoint), "-o", str(folder), "--format", "sam2,safetensors", "--dtype", dtype
        )
        assert code == 0, output
    reference = read_state_dict(result.last_checkpoint)
    tensors = load_file(str(full / "model.safetensors"))
    assert tensors.keys() == reference.keys()
    assert all(torch.equal(tensors[k], reference[k]) for k in reference)
    halves = load_file(str(half / "model.safetensors"))
    assert {t.dtype for t in halves.values() if t.is_floating_point()} == {torch.bfloat16}
    assert torch.equal(halves["no_mem_embed"], reference["no_mem_embed"].to(torch.bfloat16))
    for name in ("model.pt", "model.safetensors"):
        ratio = (half / name).stat().st_size / (full / name).stat().st_size
        assert 0.45 < ratio < 0.6, (name, ratio)
    card = json.loads((half / "model_card.json").read_text())
    assert card["dtype"] == "bf16"
    assert "model.safetensors: read back, weights equal" in output


def test_model_card_names_base_model_data_config_and_validation(
    run: tuple[TrainResult, Sam2ToolSettings], data: Path, tmp_path: Path
) -> None:
    result, settings = run
    code, output = invoke("export", str(result.last_checkpoint), "-o", str(tmp_path / "e"), "--json")
    assert code == 0, output
    card = json.loads(output)
    assert card == json.loads((tmp_path / "e" / "model_card.json").read_text())
    assert card["model"] == {
        "name": "SAM 2.1 micro",
        "version": "sam2.1",
        "size": "micro",
        "image_size": BASE_SIZE,
        "parameters": card["model"]["parameters"],
    }
    assert card["base_model"] == "sam2.1_micro"  # 'official' for micro: the packaged base
    assert card["data"]["manifest_sha256"] == hashlib.sha256((data / MANIFEST_FILE).read_bytes()).hexdigest()
    assert card["training_config"] == settings.model_dump(mode="json")
    assert set(card["validation"]) == {"val/J", "val/F", "val/J&F"}
    assert card["source_checkpoint"]["step"] == 2
    entry = card["files"]["model.pt"]
    assert entry["sha256"] == hashlib.sha256((tmp_path / "e" / "model.pt").read_bytes()).hexdigest()
    # an export exported again (here to safetensors) keeps what the first card knew
    code, output = invoke("export", str(tmp_path / "e" / "model.pt"), "-o", str(tmp_path / "f"), "-f", "safetensors")
    assert code == 0, output
    again = json.loads((tmp_path / "f" / "model_card.json").read_text())
    for key in ("model", "base_model", "data", "training_config", "validation"):
        assert again[key] == card[key], key


def test_lora_adapters_are_merged(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    settings = micro_run_settings(
        data,
        tmp_path / "runs",
        "model.checkpoint=official",  # LoRA on the packaged base, so the masks compared below are real
        f"dataset.image_size={BASE_SIZE}",
        "model.lora_targets=[image_encoder,sam_mask_decoder]",
        "model.trainable_modules=[memory_attention]",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=0",
        "optimizer.lr=1e-2",
    )
    result = train(settings)
    code, output = invoke("export", str(result.last_checkpoint), "-o", str(tmp_path / "e"))
    assert code == 0, output
    exported = torch.load(tmp_path / "e" / "model.pt", map_location="cpu", weights_only=True)["model"]
    assert not any("lora_" in key or "base_layer" in key for key in exported)
    # W + alpha/r * B @ A, computed here from the adapters in the training checkpoint
    raw = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    name = "sam_mask_decoder.iou_prediction_head.layers.0"
    a, b = raw[f"model.{name}.lora_A.default.weight"], raw[f"model.{name}.lora_B.default.weight"]
    assert b.abs().max() > 0  # the adapter learned something, so merging changes the weight
    merged = raw[f"model.{name}.base_layer.weight"] + settings.model.lora_alpha / settings.model.lora_rank * (b @ a)
    torch.testing.assert_close(exported[f"{name}.weight"], merged)
    card = json.loads((tmp_path / "e" / "model_card.json").read_text())
    assert card["lora"] == {
        "alpha": settings.model.lora_alpha,
        "rank": settings.model.lora_rank,
        "targets": ["image_encoder", "sam_mask_decoder"],
        "merged": True,
    }
    # The merged export tracks exactly as the adapted model in the training checkpoint does.
    masks = [
        predicted_masks(data, tmp_path / f"masks{index}", "--checkpoint", str(checkpoint))
        for index, checkpoint in enumerate((result.last_checkpoint, tmp_path / "e" / "model.pt"))
    ]
    assert len(masks[0]) == 8 and all((m > 0).any() for m in masks[0])
    # W + BA merged into one weight rounds differently from the two paths: 99.9 % of pixels per frame
    assert all((a == b).mean() >= 0.999 for a, b in zip(*masks, strict=True))


def test_official_checkpoint_needs_a_config(tmp_path: Path, write_file) -> None:  # type: ignore[no-untyped-def]
    model = build_model(Sam2ToolSettings(model={"size": "micro", "checkpoint": None}).model, SIZE).model
    torch.save({"model": model.state_dict()}, tmp_path / "plain.pt")
    code, output = invoke("export", str(tmp_path / "plain.pt"), "-o", str(tmp_path / "e"))
    assert code == 2
    assert "is not a sam2tool training checkpoint" in output and "--config" in output
    config = write_file("micro.yaml", f"model:\n  size: micro\n  checkpoint: null\ndataset:\n  image_size: {SIZE}\n")
    code, output = invoke("export", str(tmp_path / "plain.pt"), "-o", str(tmp_path / "e"), "--config", str(config))
    assert code == 0, output
    card = json.loads((tmp_path / "e" / "model_card.json").read_text())
    assert card["training_config"] is None and card["validation"] is None
    assert card["base_model"] == str(tmp_path / "plain.pt")


def test_existing_output_unknown_format_and_bad_checkpoint(
    run: tuple[TrainResult, Sam2ToolSettings], tmp_path: Path
) -> None:
    result, _ = run
    checkpoint = str(result.last_checkpoint)
    code, output = invoke("export", checkpoint, "-o", str(tmp_path / "e"), "--format", "sam2,tflite")
    assert code == 2 and "unknown format tflite" in output and "sam2,safetensors,onnx" in output
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("mine")
    code, output = invoke("export", checkpoint, "-o", str(tmp_path / "e"))
    assert code == 2 and "already exists; pass --force" in output
    code, output = invoke("export", checkpoint, "-o", str(tmp_path / "e"), "--force")
    assert code == 2 and "has no model_card.json" in output
    assert (tmp_path / "e" / "notes.txt").read_text() == "mine"
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    code, output = invoke("export", str(tmp_path / "junk.ckpt"), "-o", str(tmp_path / "f"))
    assert code == 1 and "junk.ckpt" in output
    assert not (tmp_path / "f").exists()


def test_force_replaces_an_earlier_export_and_a_failure_leaves_nothing(
    run: tuple[TrainResult, Sam2ToolSettings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sam2tool.errors import ExportError
    from sam2tool.services import export as service

    result, _ = run
    folder = tmp_path / "e"
    assert invoke("export", str(result.last_checkpoint), "-o", str(folder))[0] == 0
    before = (folder / "model_card.json").read_text()

    def broken(*args: object, **kwargs: object) -> None:
        raise ExportError("model.safetensors: weight x differs after loading")

    monkeypatch.setattr(service, "read_state_dict", broken)
    code, output = invoke("export", str(result.last_checkpoint), "-o", str(folder), "-f", "sam2,safetensors", "--force")
    assert code == 1 and "differs after loading" in output
    assert (folder / "model_card.json").read_text() == before  # the earlier export is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["e"]  # no temporary folder left
    monkeypatch.undo()
    code, output = invoke("export", str(result.last_checkpoint), "-o", str(folder), "-f", "safetensors", "--force")
    assert code == 0, output
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "model_card.json"]


def test_onnx_graphs_are_checked_and_reported(run: tuple[TrainResult, Sam2ToolSettings], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    result, _ = run
    folder = tmp_path / "e"
    code, output = invoke("export", str(result.last_checkpoint), "-o", str(folder), "--format", "onnx")
    assert code == 0, output
    expected = sorted([*GRAPH_FILES.values(), ONNX_MANIFEST, "model_card.json"])
    assert sorted(p.name for p in folder.iterdir()) == expected
    assert "Checked image_encoder.onnx: onnxruntime vs PyTorch, max abs difference" in output
    card = json.loads((folder / "model_card.json").read_text())
    assert card["onnx"]["ok"] is True and card["onnx"]["image_size"] == BASE_SIZE
    assert {g["file"] for g in card["onnx"]["graphs"]} == set(GRAPH_FILES.values())
    assert set(card["files"]) == set(expected) - {"model_card.json"}  # each with its SHA-256
    assert all(max(g["max_abs_diff"].values()) < 1e-3 for g in card["onnx"]["graphs"])
    assert set(card["usage"]) == {"onnx"}
    code, output = invoke(
        "export", str(result.last_checkpoint), "-o", str(tmp_path / "f"), "-f", "onnx", "--onnx-tolerance", "0"
    )
    assert code == 1 and "ONNX check of image_encoder.onnx failed" in output
    assert not (tmp_path / "f").exists()


def test_predict_video_takes_the_model_from_a_training_checkpoint_or_an_export(
    run: tuple[TrainResult, Sam2ToolSettings], data: Path, tmp_path: Path
) -> None:
    result, _ = run
    assert invoke("export", str(result.last_checkpoint), "-o", str(tmp_path / "export"))[0] == 0
    outputs = [
        predicted_masks(data, tmp_path / f"masks{index}", *model)
        for index, model in enumerate(
            (
                ["--checkpoint", str(result.last_checkpoint), "--config", str(result.run_dir / "config.yaml")],
                ["--checkpoint", str(result.last_checkpoint)],  # micro at 128 px, read from the checkpoint
                ["--checkpoint", str(tmp_path / "export" / "model.pt")],  # read from model_card.json beside it
            )
        )
    ]
    assert len(outputs[0]) == 8
    for other in outputs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(outputs[0], other, strict=True))
    (tmp_path / "export" / "model_card.json").unlink()
    video = read_split(data, "val")[0]
    frames, mask = data / FRAMES_DIR / video, data / MASKS_DIR / video / "00000.png"
    code, output = invoke("predict-video", str(frames), "-o", str(tmp_path / "m"), "--mask", str(mask),
                          "--checkpoint", str(tmp_path / "export" / "model.pt"))  # fmt: skip
    assert code == 1 and "does not fit SAM 2.1 tiny" in output  # without the card: the default model
