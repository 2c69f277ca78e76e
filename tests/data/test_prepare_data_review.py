"""Bad inputs found in review: data loss with --force, soft masks, odd names and files, resources."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sam2tool.config.schema import DatasetSettings
from sam2tool.data.datamodule import ClipDataModule
from sam2tool.data.formats.coco import CocoOptions
from sam2tool.data.formats.synthetic import SyntheticOptions
from sam2tool.data.layout import load_manifest, read_split
from sam2tool.errors import DataError, UsageError
from sam2tool.services.prepare_data import PrepareOptions, prepare_data
from tests.conftest import REPO
from tests.data.builders import (
    binary_mask,
    frame_pixels,
    labels,
    make_davis,
    make_ytvos,
    write_video,
    write_video_with_masks,
)
from tests.data.test_formats_coco_sav import make_coco, make_sav


def prepare(source: Path | None, output: Path, **options: object) -> object:
    return prepare_data(source, output, PrepareOptions(**options))  # type: ignore[arg-type]


def test_force_never_deletes_the_source_or_foreign_folders(tmp_path: Path) -> None:
    source = make_davis(tmp_path / "data" / "DAVIS")
    (tmp_path / "data" / "notes.txt").write_text("precious")
    with pytest.raises(UsageError, match="contains the source"):
        prepare(source, tmp_path / "data", format="davis", force=True)
    assert (tmp_path / "data" / "notes.txt").read_text() == "precious"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="only replaces a folder written by prepare-data"):
        prepare(source, tmp_path / "other", format="davis", force=True)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="is not a folder"):
        prepare(source, tmp_path / "afile", format="davis", force=True)
    prepare(source, tmp_path / "out", format="davis")
    prepare(source, tmp_path / "out", format="davis", force=True)  # a prepare-data folder may be replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "data", "other", "out"]


def test_soft_edged_grayscale_masks_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "yt"
    write_video_with_masks(
        source / "JPEGImages/v", source / "Annotations/v", lambda t: cv2.GaussianBlur(binary_mask(t), (3, 3), 0)
    )
    with pytest.raises(DataError, match="looks like a soft or anti-aliased binary mask"):
        prepare(source, tmp_path / "out", format="ytvos")


def test_16_bit_binary_mask_is_one_object(tmp_path: Path) -> None:
    source = tmp_path / "yt"
    write_video_with_masks(source / "JPEGImages/v", source / "Annotations/v", lambda t: binary_mask(t, np.uint16))
    prepare(source, tmp_path / "out", format="ytvos")
    assert load_manifest(tmp_path / "out").videos["v"].objects.keys() == {1}


def test_black_and_white_and_transparent_rgb_masks(tmp_path: Path) -> None:
    source = tmp_path / "yt"
    write_video(source / "JPEGImages/v", None, 2)
    (source / "Annotations/v").mkdir(parents=True)
    white = ((labels(0, objects=1) > 0)[..., None] * 255).repeat(3, axis=2).astype(np.uint8)
    Image.fromarray(white).save(source / "Annotations/v/00000.png")
    rgba = np.zeros((24, 32, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # transparent white background
    rgba[labels(1, objects=1) > 0] = (128, 0, 0, 255)  # palette colour of object 1
    Image.fromarray(rgba).save(source / "Annotations/v/00001.png")
    prepare(source, tmp_path / "out", format="ytvos")
    assert load_manifest(tmp_path / "out").videos["v"].objects == {1: ["00000", "00001"]}


def test_too_many_objects_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    source = make_coco(tmp_path / "coco")
    data = json.loads(source.read_text())
    box = [[1.0, 1.0, 5.0, 1.0, 5.0, 5.0]]
    data["annotations"] += [
        {"id": 1000 + i, "image_id": 2, "category_id": 7, "area": 1, "iscrowd": 0, "segmentation": box}
        for i in range(300)
    ]
    source.write_text(json.dumps(data))
    result = prepare(source, tmp_path / "out", format="coco", skip_bad=True, val_fraction=0.0)
    assert [s.name for s in result.manifest.skipped if "at most 254" in " ".join(s.problems)] == ["b"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["bear ", " bear", "a\nb", "tab\tname"])
def test_names_with_spaces_or_control_characters(tmp_path: Path, name: str) -> None:
    source = tmp_path / "yt"
    write_video(source / "JPEGImages" / name, source / "Annotations" / name, 2)
    write_video(source / "JPEGImages/ok", source / "Annotations/ok", 2)
    with pytest.raises(DataError, match=r"cannot be a folder name|white space"):
        prepare(source, tmp_path / "out", format="ytvos")


def test_16_bit_frames_and_png_data_in_jpg_files(tmp_path: Path) -> None:
    source = make_ytvos(tmp_path / "yt", videos=("v", "w"), frames=2, every=1)
    Image.fromarray(np.linspace(0, 65535, 24 * 32).reshape(24, 32).astype(np.uint16)).save(
        source / "JPEGImages/v/00001.png"
    )
    (source / "JPEGImages/v/00001.jpg").unlink()
    Image.fromarray(np.dstack([frame_pixels(0), np.full((24, 32), 128, np.uint8)])).save(
        source / "JPEGImages/w/00000.jpg", format="PNG"
    )
    result = prepare(source, tmp_path / "out", format="ytvos", skip_bad=True)
    assert [s.name for s in result.manifest.skipped] == ["v"]  # type: ignore[attr-defined]
    assert "image mode I;16" in result.manifest.skipped[0].problems[0]  # type: ignore[attr-defined]
    written = Image.open(tmp_path / "out/JPEGImages/w/00000.jpg")
    assert written.format == "JPEG" and written.mode == "RGB"


def test_davis_2016_imagesets(tmp_path: Path) -> None:
    source = make_davis(tmp_path / "DAVIS", videos=("bear", "blackswan", "boat"))
    (source / "ImageSets/480p").mkdir(parents=True)
    (source / "ImageSets/480p/train.txt").write_text(
        "/JPEGImages/480p/bear/00000.jpg /Annotations/480p/bear/00000.png\n"
        "/JPEGImages/480p/boat/00000.jpg /Annotations/480p/boat/00000.png\n"
    )
    (source / "ImageSets/480p/val.txt").write_text(
        "/JPEGImages/480p/blackswan/00000.jpg /Annotations/480p/blackswan/00000.png\n"
    )
    prepare(source, tmp_path / "out", format="davis")
    assert read_split(tmp_path / "out", "val") == ["blackswan"]


def test_decompression_bomb_and_broken_links_are_named(tmp_path: Path) -> None:
    source = make_ytvos(tmp_path / "yt", videos=("v", "w", "ok"), frames=3, every=1)
    Image.new("1", (14000, 13000)).save(source / "Annotations/v/00001.png")
    (source / "Annotations/w/00002.png").unlink()
    (source / "Annotations/w/00002.png").symlink_to(tmp_path / "missing.png")
    result = prepare(source, tmp_path / "out", format="ytvos", skip_bad=True)
    problems = {s.name: " ".join(s.problems) for s in result.manifest.skipped}  # type: ignore[attr-defined]
    assert "too large to decode safely" in problems["v"]
    assert "00002.png is a broken symbolic link" in problems["w"]


def test_square_frames_with_exif_rotation_are_ambiguous(tmp_path: Path) -> None:
    source = tmp_path / "yt"
    (source / "JPEGImages/v").mkdir(parents=True)
    (source / "Annotations/v").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(frame_pixels(0, 32, 32)).save(source / "JPEGImages/v/00000.jpg", exif=exif)
    Image.fromarray(labels(0, 32, 32)).save(source / "Annotations/v/00000.png")
    with pytest.raises(DataError, match="EXIF orientation that keeps its width and height"):
        prepare(source, tmp_path / "out", format="ytvos")


def test_non_ascii_digits_are_not_frame_numbers(tmp_path: Path) -> None:
    source = tmp_path / "yt"
    write_video(source / "JPEGImages/v", source / "Annotations/v", names=["00000", "00001", "²"])
    with pytest.raises(DataError, match="frame names must be numbers"):
        prepare(source, tmp_path / "out", format="ytvos")


def test_coco_names_from_paths_never_collide(tmp_path: Path) -> None:
    source = make_coco(tmp_path / "coco")
    data = json.loads(source.read_text())
    images = tmp_path / "coco/train2017"
    for folder in ("patch0", "patch1"):
        (images / folder).mkdir()
        cv2.imwrite(str(images / folder / "a.jpg"), frame_pixels(0))
    data["images"][0]["file_name"] = "patch0/a.jpg"
    data["images"][1]["file_name"] = "patch1/a.jpg"
    source.write_text(json.dumps(data))
    prepare(source, tmp_path / "out", format="coco", format_options=CocoOptions(images=images))
    assert set(load_manifest(tmp_path / "out").videos) == {"patch0_a", "patch1_a"}


def test_malformed_meta_json_is_ignored_not_a_crash(tmp_path: Path) -> None:
    source = make_ytvos(tmp_path / "yt", videos=("a1",), frames=2, every=1)
    (source / "meta.json").write_text(json.dumps({"videos": {"a1": {"objects": ["fish"]}}}))
    prepare(source, tmp_path / "out", format="ytvos")
    assert load_manifest(tmp_path / "out").videos["a1"].object_sources == {}


def test_sav_releases_each_video_file(tmp_path: Path) -> None:
    source = make_sav(tmp_path / "sav")
    for i in range(2, 8):
        for suffix in (".mp4", "_manual.json"):
            (source / f"sav_00000{i}{suffix}").write_bytes((source / f"sav_000001{suffix}").read_bytes())
    before = len(os.listdir("/proc/self/fd"))
    prepare(source, tmp_path / "out", format="sav")
    assert len(os.listdir("/proc/self/fd")) <= before + 1


def test_too_few_clips_for_a_batch_is_an_error(tmp_path: Path) -> None:
    prepare(
        None, tmp_path / "out", format="synthetic", format_options=SyntheticOptions(num_videos=4, frames=8, size=64)
    )
    module = ClipDataModule(
        DatasetSettings(root=tmp_path / "out", image_size=64, video_clip_length=4, num_workers=0, batch_size=8)
    )
    module.setup("fit")
    with pytest.raises(DataError, match="fewer than one batch of 8"):
        module.train_dataloader()


def test_sigterm_removes_the_partial_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "sam2tool",
        "prepare-data",
        str(out),
        "-f",
        "synthetic",
        "--num-videos",
        "400",
        "--frames",
        "40",
        "--size",
        "128",
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".out.partial-*")):
        time.sleep(0.1)
    assert list(tmp_path.glob(".out.partial-*")), "conversion never started"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "terminated" in stderr
    assert list(tmp_path.iterdir()) == []
