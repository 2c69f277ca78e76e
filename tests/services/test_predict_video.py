"""predict-video as a user runs it: outputs, prompts, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.data.images import read_label_mask, write_label_mask
from tests.models.test_streaming import make_frames

runner = CliRunner()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pv")
    make_frames(root / "frames", 12)
    config = root / "micro.yaml"
    assert runner.invoke(app, ["init-config", str(config), "-p", "micro"]).exit_code == 0
    return root / "frames", config


def predict(video: tuple[Path, Path], output: Path, *args: str) -> object:
    frames, config = video
    return runner.invoke(app, ["predict-video", str(frames), "-o", str(output), "--config", str(config), *args])


def test_points_and_box_give_a_palette_png_per_frame_and_overlays(video: tuple[Path, Path], tmp_path: Path) -> None:
    result = predict(
        video,
        tmp_path / "out",
        "--point",
        "25,35",
        "--point",
        "60,10,0",
        "--box",
        "10,20,40,50",
        "--overlay",
        "--per-object",
        "--save-video",
        str(tmp_path / "out.mp4"),
    )
    assert result.exit_code == 0, result.output
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{t:05d}" for t in range(12)]
    image = Image.open(pngs[0])
    assert image.mode == "P" and image.size == (120, 90)
    assert set(np.unique(read_label_mask(pngs[0])).tolist()) <= {0, 1}
    assert len(list((tmp_path / "out/overlays").glob("*.jpg"))) == 12
    assert len(list((tmp_path / "out/objects/1").glob("*.png"))) == 12
    assert (tmp_path / "out.mp4").stat().st_size > 1000
    assert not list(tmp_path.glob(".*partial*"))


def test_prompts_file_with_objects_on_later_frames(video: tuple[Path, Path], tmp_path: Path) -> None:
    labels = np.zeros((90, 120), dtype=np.uint8)
    labels[55:80, 78:103] = 2
    write_label_mask(tmp_path / "m.png", labels)
    prompts = [
        {"frame": 3, "obj_id": 1, "points": [[30, 35]], "labels": [1]},
        {"frame": 5, "mask": "m.png"},
    ]
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    result = predict(video, tmp_path / "out", "--prompts", str(tmp_path / "prompts.json"))
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.png"))) == 12  # frames 0..2 come from the backward pass
    assert "2 object(s)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--point", "500,10"], "point (500, 10) is outside the 120x90 frame"),
        (["--box", "40,20,10,50"], "needs x2 > x1 and y2 > y1"),
        (["--point", "10,10", "--frame", "99"], "the video has frames 0..11"),
        (["--point", "ten,10"], "must look like X,Y or X,Y,LABEL"),
        ([], "give at least one prompt"),
    ],
)
def test_bad_prompts_exit_2(video: tuple[Path, Path], tmp_path: Path, args: list[str], message: str) -> None:
    result = predict(video, tmp_path / "out", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_mask_of_the_wrong_size(video: tuple[Path, Path], tmp_path: Path) -> None:
    write_label_mask(tmp_path / "m.png", np.ones((10, 10), dtype=np.uint8))
    result = predict(video, tmp_path / "out", "--mask", str(tmp_path / "m.png"))
    assert result.exit_code == 2
    assert "the mask is 10x10 but the frames are 120x90" in result.output


def test_missing_input_and_empty_folder(video: tuple[Path, Path], tmp_path: Path) -> None:
    _, config = video
    result = runner.invoke(
        app,
        ["predict-video", str(tmp_path / "nope"), "-o", str(tmp_path / "o"), "--config", str(config), "--point", "1,1"],
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(
        app,
        [
            "predict-video",
            str(tmp_path / "empty"),
            "-o",
            str(tmp_path / "o"),
            "--config",
            str(config),
            "--point",
            "1,1",
        ],
    )
    assert result.exit_code == 2 and "has no frames" in result.output


def test_unreadable_frame_stops_cleanly_and_keeps_what_was_written(video: tuple[Path, Path], tmp_path: Path) -> None:
    frames, config = video
    broken = tmp_path / "frames"
    broken.mkdir()
    for path in sorted(frames.iterdir()):
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "00007.jpg").write_bytes(b"not a jpeg")
    result = runner.invoke(
        app, ["predict-video", str(broken), "-o", str(tmp_path / "out"), "--config", str(config), "--point", "25,35"]
    )
    assert result.exit_code == 1
    assert "00007.jpg cannot be read" in result.output
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.png")) == [f"{t:05d}" for t in range(7)]


def test_video_file_input(video: tuple[Path, Path], tmp_path: Path) -> None:
    import cv2

    frames, config = video
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), 24, (120, 90))
    for path in sorted(frames.iterdir()):
        writer.write(cv2.imread(str(path)))
    writer.release()
    result = runner.invoke(
        app,
        [
            "predict-video",
            str(tmp_path / "clip.mp4"),
            "-o",
            str(tmp_path / "out"),
            "--config",
            str(config),
            "--point",
            "25,35",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.png")) == [f"{t:05d}" for t in range(12)]


def test_compile_needs_cuda_and_offload_works_on_cpu(video: tuple[Path, Path], tmp_path: Path) -> None:
    result = predict(video, tmp_path / "a", "--point", "25,35", "--compile", "--device", "cpu")
    assert result.exit_code == 2 and "--compile needs a CUDA GPU" in result.output
    result = predict(video, tmp_path / "b", "--point", "25,35", "--offload", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "b").glob("*.png"))) == 12


def test_outputs_that_would_overwrite(video: tuple[Path, Path], tmp_path: Path) -> None:
    frames, _ = video
    result = predict(video, frames, "--point", "25,35")
    assert result.exit_code == 2 and "overlaps the input" in result.output
    assert predict(video, tmp_path / "o", "--point", "25,35").exit_code == 0
    result = predict(video, tmp_path / "o", "--point", "25,35")
    assert result.exit_code == 2 and "pass --force" in result.output
    assert predict(video, tmp_path / "o", "--point", "25,35", "--force").exit_code == 0
    result = predict(video, tmp_path / "v", "--point", "25,35", "--save-video", str(tmp_path / "x.gif"))
    assert result.exit_code == 2 and "only .mp4" in result.output


def test_duplicate_frame_stems_are_refused(video: tuple[Path, Path], tmp_path: Path) -> None:
    frames, config = video
    folder = tmp_path / "f"
    folder.mkdir()
    for path in sorted(frames.iterdir())[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    Image.open(frames / "00001.jpg").save(folder / "00001.png")
    result = runner.invoke(
        app, ["predict-video", str(folder), "-o", str(tmp_path / "o"), "--config", str(config), "--point", "1,1"]
    )
    assert result.exit_code == 2 and "are both frame 00001" in result.output


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"frame": 0, "obj_id": 1, "points": [[5, 5]], "labels": [2]}], "click labels must be 1"),
        ([{"frame": 0, "obj_id": 1, "box": [1, 1, 5, 5]}, {"frame": 0, "obj_id": 1, "box": [2, 2, 6, 6]}], "two boxes"),
        ([{"frame": 0, "mask": "missing.png"}], "does not exist"),
    ],
)
def test_prompt_file_mistakes(video: tuple[Path, Path], tmp_path: Path, entries: list[dict], message: str) -> None:
    (tmp_path / "p.json").write_text(json.dumps(entries))
    result = predict(video, tmp_path / "o", "--prompts", str(tmp_path / "p.json"))
    assert result.exit_code == 2 and message in result.output, result.output


def test_clicks_for_one_object_are_pooled(video: tuple[Path, Path], tmp_path: Path) -> None:
    entries = [
        {"frame": 0, "obj_id": 1, "points": [[25, 35]]},
        {"frame": 0, "obj_id": 1, "points": [[5, 5]], "labels": [0]},
    ]
    (tmp_path / "p.json").write_text(json.dumps(entries))
    assert predict(video, tmp_path / "o", "--prompts", str(tmp_path / "p.json")).exit_code == 0


@pytest.mark.parametrize("size", ["100", "32", "-32", "0"])
def test_image_size_is_validated(video: tuple[Path, Path], tmp_path: Path, size: str) -> None:
    result = predict(video, tmp_path / "o", "--point", "25,35", "--image-size", size)
    assert result.exit_code == 2 and "dataset.image_size" in result.output


def test_backward_pass_on_a_video_file_decodes_once(
    video: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    frames, config = video
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 24, (120, 90))
    for path in sorted(frames.iterdir()):
        writer.write(cv2.imread(str(path)))
    writer.release()
    from sam2tool.data import video_file

    decoded = []
    original = video_file.VideoFileReader.read

    def counting(self, index):  # type: ignore[no-untyped-def]
        decoded.append(index)
        return original(self, index)

    monkeypatch.setattr(video_file.VideoFileReader, "read", counting)
    result = runner.invoke(
        app,
        [
            "predict-video",
            str(clip),
            "-o",
            str(tmp_path / "o"),
            "--config",
            str(config),
            "--point",
            "25,35",
            "--frame",
            "8",
            "--overlay",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "o").glob("*.png"))) == 12
    assert len(decoded) <= 3 * 12  # forward pass, one extraction of frames 0..8, overlays from the cache
    assert not list((tmp_path / "o").glob(".sam2tool-frames-*"))
