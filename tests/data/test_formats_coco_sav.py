"""COCO and SA-V sources converted from fixtures the tests write."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.data.formats.coco import CocoOptions
from sam2tool.data.formats.sav import SavOptions
from sam2tool.data.images import read_label_mask
from sam2tool.data.layout import load_manifest
from sam2tool.data.rle import encode_rle
from sam2tool.errors import DataError
from sam2tool.services.prepare_data import PrepareOptions, prepare_data
from tests.data.builders import frame_pixels

runner = CliRunner()


def rle_of(mask: np.ndarray, compressed: bool = True) -> dict[str, object]:
    rle = encode_rle(mask)
    if compressed:
        return rle
    flat = mask.T.reshape(-1)
    runs, value, count = [], False, 0
    for pixel in flat:
        if pixel == value:
            count += 1
        else:
            runs.append(count)
            value, count = pixel, 1
    runs.append(count)
    return {"size": list(mask.shape), "counts": runs}


def make_coco(root: Path) -> Path:
    images = root / "train2017"
    images.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "empty.jpg"):
        cv2.imwrite(str(images / name), frame_pixels(0)[..., ::-1])
    big = np.zeros((24, 32), dtype=bool)
    big[2:20, 2:30] = True
    small = np.zeros((24, 32), dtype=bool)
    small[5:9, 5:9] = True
    crowd = np.zeros((24, 32), dtype=bool)
    crowd[20:24, 0:4] = True
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": 24, "width": 32},
            {"id": 2, "file_name": "b.jpg", "height": 24, "width": 32},
            {"id": 3, "file_name": "empty.jpg", "height": 24, "width": 32},
        ],
        "categories": [{"id": 7, "name": "fish"}, {"id": 8, "name": "crab"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 8, "area": 16, "iscrowd": 0, "segmentation": rle_of(small, False)},
            {"id": 11, "image_id": 1, "category_id": 7, "area": 504, "iscrowd": 0, "segmentation": rle_of(big)},
            {"id": 12, "image_id": 1, "category_id": 7, "area": 16, "iscrowd": 1, "segmentation": rle_of(crowd)},
            {
                "id": 13,
                "image_id": 2,
                "category_id": 7,
                "area": 100,
                "iscrowd": 0,
                "segmentation": [[4.0, 4.0, 20.0, 4.0, 20.0, 14.0, 4.0, 14.0]],
            },
        ],
    }
    (root / "annotations").mkdir()
    path = root / "annotations" / "instances_train2017.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_images_become_one_frame_samples(tmp_path: Path) -> None:
    source = make_coco(tmp_path / "coco")
    result = runner.invoke(
        app, ["prepare-data", str(source), str(tmp_path / "out"), "-f", "coco", "--val-fraction", "0"]
    )
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tmp_path / "out")
    assert set(manifest.videos) == {"a", "b"}
    a = manifest.videos["a"]
    assert a.kind == "image" and a.frames == a.annotated == ["00000"]
    assert a.object_sources == {1: "fish (annotation 11)", 2: "crab (annotation 10)"}
    labels = read_label_mask(tmp_path / "out/Annotations/a/00000.png")
    assert labels[6, 6] == 2  # the small object, painted over the big one
    assert labels[3, 3] == 1
    assert labels[22, 1] == 255  # crowd region is void
    b = read_label_mask(tmp_path / "out/Annotations/b/00000.png")
    assert b[8, 10] == 1 and b[1, 1] == 0
    assert [s.name for s in manifest.skipped] == ["empty"]
    assert "no object annotations" in manifest.skipped[0].problems[0]


def test_coco_file_names_cannot_escape(tmp_path: Path) -> None:
    source = make_coco(tmp_path / "coco")
    data = json.loads(source.read_text())
    data["images"][1]["file_name"] = "../../etc/passwd"
    source.write_text(json.dumps(data))
    with pytest.raises(DataError, match="points outside the image folder"):
        prepare_data(source, tmp_path / "out", PrepareOptions(format="coco"))


def test_coco_missing_images_and_bad_json(tmp_path: Path) -> None:
    source = make_coco(tmp_path / "coco")
    with pytest.raises(DataError, match=r"does not contain a\.jpg"):
        prepare_data(
            source, tmp_path / "out", PrepareOptions(format="coco", format_options=CocoOptions(images=tmp_path))
        )
    source.write_text("{not json")
    with pytest.raises(DataError, match="is not valid JSON"):
        prepare_data(source, tmp_path / "out", PrepareOptions(format="coco"))


def make_sav(root: Path, frames: int = 12, objects: int = 2) -> Path:
    root.mkdir(parents=True)
    writer = cv2.VideoWriter(str(root / "sav_000001.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 24, (32, 24))
    for t in range(frames):
        writer.write(np.full((24, 32, 3), 10 * t, dtype=np.uint8))
    writer.release()
    masklets = []
    for k in range(0, frames, 4):
        per_object = []
        for o in range(objects):
            mask = np.zeros((24, 32), dtype=bool)
            mask[2 + 8 * o : 6 + 8 * o, 2 + k : 8 + k] = True
            per_object.append(encode_rle(mask))
        masklets.append(per_object)
    data = {"video_id": "sav_000001", "video_frame_count": frames, "masklet": masklets, "masklet_id": [3, 9]}
    (root / "sav_000001_manual.json").write_text(json.dumps(data))
    return root


def test_sav_annotated_frames_at_6_fps(tmp_path: Path) -> None:
    source = make_sav(tmp_path / "sav")
    prepare_data(source, tmp_path / "out", PrepareOptions(format="sav", val_fraction=0.0))
    video = load_manifest(tmp_path / "out").videos["sav_000001"]
    assert video.frames == video.annotated == ["00000", "00004", "00008"]
    assert video.object_sources == {1: "3", 2: "9"}
    labels = read_label_mask(tmp_path / "out/Annotations/sav_000001/00004.png")
    assert labels[3, 7] == 1 and labels[11, 7] == 2 and labels[20, 20] == 0
    frame = cv2.imread(str(tmp_path / "out/JPEGImages/sav_000001/00008.jpg"))
    assert abs(int(frame.mean()) - 80) <= 3  # the 9th video frame, decoded in order


def test_sav_all_frames_keeps_unannotated_ones(tmp_path: Path) -> None:
    source = make_sav(tmp_path / "sav")
    prepare_data(
        source,
        tmp_path / "out",
        PrepareOptions(format="sav", val_fraction=0.0, format_options=SavOptions(all_frames=True)),
    )
    video = load_manifest(tmp_path / "out").videos["sav_000001"]
    assert len(video.frames) == 12 and video.annotated == ["00000", "00004", "00008"]


def test_sav_without_video_or_json(tmp_path: Path) -> None:
    source = make_sav(tmp_path / "sav")
    (source / "sav_000001.mp4").unlink()
    with pytest.raises(DataError, match=r"has no video sav_000001\.mp4 beside it"):
        prepare_data(source, tmp_path / "out", PrepareOptions(format="sav"))
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match=r"has no <video>_manual\.json files"):
        prepare_data(tmp_path / "none", tmp_path / "out", PrepareOptions(format="sav"))
