"""prepare-data: formats converted from small fixtures, bad inputs, atomic output, splits."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.data.convert import VideoProblems, convert_video, split_videos
from sam2tool.data.formats.base import SourceFrame, SourceVideo
from sam2tool.data.formats.synthetic import SyntheticOptions
from sam2tool.data.images import PALETTE, read_label_mask
from sam2tool.data.layout import check_name, load_manifest, read_split
from sam2tool.errors import DataError, UsageError
from sam2tool.services.prepare_data import PrepareOptions, prepare_data
from tests.data.builders import frame_pixels, labels, make_davis, make_ytvos, write_video, write_video_with_masks

runner = CliRunner()


def prepare(source: Path | None, output: Path, **options: object) -> object:
    return prepare_data(source, output, PrepareOptions(**options))  # type: ignore[arg-type]


def test_davis_round_trip(tmp_path: Path) -> None:
    source = make_davis(tmp_path / "DAVIS")
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare-data", str(source), str(out), "--format", "davis", "--val-videos", "car"])
    assert result.exit_code == 0, result.output
    assert "videos" in result.output and "annotated frames" in result.output
    manifest = load_manifest(out)
    assert set(manifest.videos) == {"bear", "car"}
    bear = manifest.videos["bear"]
    assert bear.frames == ["00000", "00001", "00002", "00003"] == bear.annotated
    assert bear.objects == {1: bear.frames, 2: bear.frames}
    assert (bear.height, bear.width) == (24, 32)
    assert bear.source == "JPEGImages/480p/bear"
    for t, stem in enumerate(bear.frames):
        # JPEGs are copied byte for byte; masks hold exactly the source labels, as palette PNGs.
        assert (out / "JPEGImages/bear" / f"{stem}.jpg").read_bytes() == (
            source / "JPEGImages/480p/bear" / f"{stem}.jpg"
        ).read_bytes()
        mask = Image.open(out / "Annotations/bear" / f"{stem}.png")
        assert mask.mode == "P"
        assert np.array_equal(np.asarray(mask), labels(t))
    assert read_split(out, "train") == ["bear"]
    assert read_split(out, "val") == ["car"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DAVIS", "out"]  # no staging folder left


def test_davis_imagesets_give_the_split(tmp_path: Path) -> None:
    source = make_davis(tmp_path / "DAVIS", videos=("a", "b", "c"))
    (source / "ImageSets" / "2017").mkdir(parents=True)
    (source / "ImageSets" / "2017" / "train.txt").write_text("a\nc\n")
    (source / "ImageSets" / "2017" / "val.txt").write_text("b\n")
    prepare(source, tmp_path / "out", format="davis")
    assert read_split(tmp_path / "out", "val") == ["b"]
    assert read_split(tmp_path / "out", "train") == ["a", "c"]


def test_davis2016_binary_masks_are_object_one(tmp_path: Path) -> None:
    source = tmp_path / "DAVIS"
    write_video_with_masks(source / "JPEGImages/480p/cows", source / "Annotations/480p/cows")  # binary masks
    prepare(source, tmp_path / "out", format="davis")
    assert np.array_equal(read_label_mask(tmp_path / "out/Annotations/cows/00001.png"), labels(1, objects=1))


def test_ytvos_sparse_annotations_and_meta(tmp_path: Path) -> None:
    source = make_ytvos(tmp_path / "ytvos")
    meta = {"videos": {"a1": {"objects": {"1": {"category": "fish"}, "2": {"category": "crab"}}}}}
    (source / "meta.json").write_text(json.dumps(meta))
    prepare(source, tmp_path / "out", format="ytvos")
    video = load_manifest(tmp_path / "out").videos["a1"]
    assert len(video.frames) == 10
    assert video.annotated == ["00000", "00005"]
    assert video.object_sources == {1: "fish", 2: "crab"}
    assert not (tmp_path / "out/Annotations/a1/00001.png").exists()
    assert (tmp_path / "out/JPEGImages/a1/00001.jpg").exists()


def test_natural_sort_and_number_names(tmp_path: Path) -> None:
    source = tmp_path / "yt"
    write_video(source / "JPEGImages/v", source / "Annotations/v", names=["10", "2", "1"])
    prepare(source, tmp_path / "out", format="ytvos")
    assert load_manifest(tmp_path / "out").videos["v"].frames == ["00001", "00002", "00010"]


def test_synthetic_is_reproducible_and_learnable_shape(tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = runner.invoke(
            app,
            [
                "prepare-data",
                str(tmp_path / name),
                "-f",
                "synthetic",
                "--num-videos",
                "3",
                "--frames",
                "8",
                "--size",
                "64",
            ],
        )
        assert result.exit_code == 0, result.output
    for stem in ("JPEGImages/synthetic_001/00007.jpg", "Annotations/synthetic_001/00007.png"):
        assert (tmp_path / "a" / stem).read_bytes() == (tmp_path / "b" / stem).read_bytes()
    manifest = load_manifest(tmp_path / "a")
    for video in manifest.videos.values():
        assert 2 <= len(video.objects) <= 3
        assert video.annotated == video.frames


def test_synthetic_number_of_objects_can_be_fixed(tmp_path: Path) -> None:
    command = ["prepare-data", str(tmp_path / "one"), "-f", "synthetic", "--num-videos", "4", "--frames", "4"]
    result = runner.invoke(app, [*command, "--size", "64", "--objects", "1"])
    assert result.exit_code == 0, result.output
    assert [len(v.objects) for v in load_manifest(tmp_path / "one").videos.values()] == [1, 1, 1, 1]
    labels = np.array(Image.open(tmp_path / "one" / "Annotations" / "synthetic_000" / "00000.png"))
    assert set(np.unique(labels)) == {0, 1}
    result = runner.invoke(app, [*command, "--size", "64", "--objects", "0"])
    assert result.exit_code == 2


def test_synthetic_objects_move_leave_and_come_back(tmp_path: Path) -> None:
    prepare(
        None, tmp_path / "out", format="synthetic", format_options=SyntheticOptions(num_videos=8, frames=48, size=64)
    )
    manifest = load_manifest(tmp_path / "out")
    gaps = 0
    for video in manifest.videos.values():
        for frames in video.objects.values():
            positions = [video.frames.index(f) for f in frames]
            gaps += any(b - a > 1 for a, b in itertools.pairwise(positions))
    assert gaps > 0, "no object ever left the frame and came back"


@pytest.mark.parametrize("case", ["corrupt_jpeg", "truncated_jpeg", "truncated_png"])
def test_corrupt_files_are_named(tmp_path: Path, case: str) -> None:
    source = make_ytvos(tmp_path / "yt", videos=("v",), frames=3, every=1)
    target = source / ("Annotations/v/00001.png" if case == "truncated_png" else "JPEGImages/v/00001.jpg")
    data = target.read_bytes()
    target.write_bytes(b"not an image at all" if case == "corrupt_jpeg" else data[: len(data) // 2])
    with pytest.raises(DataError) as excinfo:
        prepare(source, tmp_path / "out", format="ytvos")
    assert "00001" in str(excinfo.value) and "cannot be decoded" in str(excinfo.value)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yt"], "staging folder left behind"


def test_rgb_masks_map_palette_colours_and_refuse_others(tmp_path: Path) -> None:
    source = tmp_path / "yt"
    # RGB masks in palette colours
    write_video_with_masks(source / "JPEGImages/v", source / "Annotations/v", lambda t: PALETTE[labels(t)])
    prepare(source, tmp_path / "ok", format="ytvos")
    assert np.array_equal(read_label_mask(tmp_path / "ok/Annotations/v/00001.png"), labels(1))

    rgb = PALETTE[labels(1)].copy()
    rgb[0, 0] = (12, 34, 56)
    Image.fromarray(rgb).save(source / "Annotations/v/00001.png")
    with pytest.raises(
        DataError, match=r"00001\.png is an RGB image with colours that are not DAVIS palette colours: \(12, 34, 56\)"
    ):
        prepare(source, tmp_path / "bad", format="ytvos")


def test_16_bit_masks(tmp_path: Path) -> None:
    source = tmp_path / "yt"
    write_video_with_masks(source / "JPEGImages/v", source / "Annotations/v", lambda t: labels(t).astype(np.uint16))
    prepare(source, tmp_path / "ok", format="ytvos")
    assert np.array_equal(read_label_mask(tmp_path / "ok/Annotations/v/00000.png"), labels(0))
    Image.fromarray(labels(1).astype(np.uint16) * 300).save(source / "Annotations/v/00001.png")
    with pytest.raises(DataError, match="16-bit label image with ids up to 600"):
        prepare(source, tmp_path / "bad", format="ytvos")


def test_mask_size_differs_from_frame(tmp_path: Path) -> None:
    source = make_ytvos(tmp_path / "yt", videos=("v",), frames=2, every=1)
    Image.fromarray(labels(0)[:20]).save(source / "Annotations/v/00000.png")
    with pytest.raises(DataError, match=r"mask .*00000\.png is 32x20 but its frame JPEGImages/v/00000\.jpg is 32x24"):
        prepare(source, tmp_path / "out", format="ytvos")


def test_video_without_annotations_and_empty_first_annotation(tmp_path: Path) -> None:
    source = tmp_path / "yt"
    write_video(source / "JPEGImages/none", None, 2)
    write_video(source / "JPEGImages/empty", source / "Annotations/empty", 2, objects=0)
    write_video(source / "JPEGImages/good", source / "Annotations/good", 2)
    with pytest.raises(DataError) as excinfo:
        prepare(source, tmp_path / "out", format="ytvos")
    text = str(excinfo.value)
    assert "2 of 3 videos have problems" in text
    assert "none: JPEGImages/none has no annotated frame" in text
    assert "empty: the first annotated frame of JPEGImages/empty (00000) shows no object" in text


def test_frame_names_that_are_not_numbers_and_duplicates(tmp_path: Path) -> None:
    source = tmp_path / "yt"
    write_video(source / "JPEGImages/v", source / "Annotations/v", names=["00000", "frame_a"])
    write_video(source / "JPEGImages/w", source / "Annotations/w", names=["1", "001"])
    with pytest.raises(DataError) as excinfo:
        prepare(source, tmp_path / "out", format="ytvos")
    text = str(excinfo.value)
    assert "JPEGImages/v/frame_a.jpg: frame names must be numbers" in text
    assert "JPEGImages/w/001.jpg and JPEGImages/w/1.jpg are both frame 1" in text or (
        "JPEGImages/w/1.jpg and JPEGImages/w/001.jpg are both frame 1" in text
    )


def test_exif_rotated_frames_follow_the_mask(tmp_path: Path) -> None:
    source = tmp_path / "yt"
    (source / "JPEGImages/v").mkdir(parents=True)
    (source / "Annotations/v").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 32x24, displayed rotated by 90 degrees: 24x32
    for t in range(2):
        Image.fromarray(frame_pixels(t)).save(source / f"JPEGImages/v/{t:05d}.jpg", exif=exif, quality=95)
        Image.fromarray(labels(t, height=32, width=24)).save(source / f"Annotations/v/{t:05d}.png")
    prepare(source, tmp_path / "out", format="ytvos")
    video = load_manifest(tmp_path / "out").videos["v"]
    assert (video.width, video.height) == (24, 32)
    written = Image.open(tmp_path / "out/JPEGImages/v/00000.jpg")
    assert written.size == (24, 32)
    assert written.getexif().get(0x0112, 1) == 1  # re-encoded without the rotation tag


def test_empty_source_and_missing_source(tmp_path: Path) -> None:
    (tmp_path / "empty/JPEGImages").mkdir(parents=True)
    with pytest.raises(DataError, match="has no videos"):
        prepare(tmp_path / "empty", tmp_path / "out", format="ytvos")
    (tmp_path / "not_davis").mkdir()
    with pytest.raises(DataError, match="has no JPEGImages/ folder"):
        prepare(tmp_path / "not_davis", tmp_path / "out", format="davis")
    with pytest.raises(UsageError, match="must not be inside the source folder"):
        prepare(tmp_path / "empty", tmp_path / "empty" / "out", format="ytvos")
    result = runner.invoke(app, ["prepare-data", str(tmp_path / "nope"), str(tmp_path / "out"), "-f", "davis"])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_unknown_format_and_wrong_arguments(tmp_path: Path) -> None:
    assert runner.invoke(app, ["prepare-data", "a", "b", "--format", "kitti"]).exit_code == 2
    result = runner.invoke(app, ["prepare-data", str(tmp_path / "a"), "--format", "davis"])
    assert result.exit_code == 2
    assert "takes SOURCE OUTPUT" in result.output


def test_skip_bad_leaves_bad_videos_out_and_lists_them(tmp_path: Path) -> None:
    source = make_ytvos(tmp_path / "yt", videos=("good", "bad", "ok2"), frames=2, every=1)
    (source / "JPEGImages/bad/00001.jpg").write_bytes(b"garbage")
    result = runner.invoke(app, ["prepare-data", str(source), str(tmp_path / "out"), "-f", "ytvos", "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert "skipped bad:" in result.output
    manifest = load_manifest(tmp_path / "out")
    assert set(manifest.videos) == {"good", "ok2"}
    assert [s.name for s in manifest.skipped] == ["bad"]
    assert "cannot be decoded" in manifest.skipped[0].problems[0]
    assert not (tmp_path / "out/JPEGImages/bad").exists()
    splits = read_split(tmp_path / "out", "train") + read_split(tmp_path / "out", "val")
    assert sorted(splits) == ["good", "ok2"]


def test_output_exists_needs_force_and_failed_replace_keeps_the_old(tmp_path: Path) -> None:
    source = make_ytvos(tmp_path / "yt", videos=("v", "w"), frames=2, every=1)
    out = tmp_path / "out"
    prepare(source, out, format="ytvos")
    before = (out / "manifest.json").read_text()
    with pytest.raises(UsageError, match="already exists; pass --force"):
        prepare(source, out, format="ytvos")
    (source / "JPEGImages/v/00000.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError):
        prepare(source, out, format="ytvos", force=True)
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "yt"]


def test_interrupted_run_leaves_nothing(tmp_path: Path) -> None:
    source = make_ytvos(tmp_path / "yt", videos=("v", "w"), frames=2, every=1)

    def interrupt(name: str, index: int, total: int) -> None:
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare_data(source, tmp_path / "out", PrepareOptions(format="ytvos"), interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yt"]


@pytest.mark.parametrize("name", ["../evil", "/abs", "a/b", "..", ".hidden", ""])
def test_names_cannot_escape_the_output(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError, match="cannot be a folder name"):
        check_name(name)
    video = SourceVideo(name, "json", [SourceFrame(0, "f", lambda: (frame_pixels(0), None), lambda h, w: labels(0))])
    with pytest.raises(VideoProblems):
        convert_video(video, tmp_path / "out")
    assert not (tmp_path / "evil").exists()
    assert not any(tmp_path.rglob("*.jpg"))


def test_split_is_reproducible() -> None:
    names = [f"v{i:02d}" for i in range(20)]
    first = split_videos(names, 0.25, seed=3)
    assert first == split_videos(list(reversed(names)), 0.25, seed=3)
    assert len(first["val"]) == 5 and len(first["train"]) == 15
    assert set(first["val"]) != set(split_videos(names, 0.25, seed=4)["val"])
    assert split_videos(["a", "b"], 0.01)["val"] != []  # at least one held-out video
    assert split_videos(["a", "b"], 0.99)["train"] != []  # and at least one to train on
    assert split_videos(names, 1.0) == {"train": [], "val": names}  # a test set: every video held out
    with pytest.raises(UsageError, match="not in the data: zz"):
        split_videos(names, 0.2, ["zz"])


def test_synthetic_objects_are_recognisable_by_appearance_alone(tmp_path: Path) -> None:
    """Colours seen on an object's first frame identify its pixels on every later frame.

    This is what makes the data set learnable by a tracker: appearance carries the identity.
    """
    prepare(
        None, tmp_path / "out", format="synthetic", format_options=SyntheticOptions(num_videos=6, frames=16, size=96)
    )
    manifest = load_manifest(tmp_path / "out")
    correct = total = 0
    for name, video in manifest.videos.items():
        frames = [
            np.asarray(Image.open(tmp_path / f"out/JPEGImages/{name}/{s}.jpg"), dtype=np.float32) for s in video.frames
        ]
        masks = [read_label_mask(tmp_path / f"out/Annotations/{name}/{s}.png") for s in video.frames]
        models = {}
        for object_id, stems in video.objects.items():
            first = video.frames.index(stems[0])
            pixels = frames[first][masks[first] == object_id]
            models[object_id] = pixels[np.random.default_rng(0).choice(len(pixels), min(len(pixels), 200))]
        for t in range(1, len(frames)):
            for object_id in models:
                pixels = frames[t][masks[t] == object_id][::7]
                if not len(pixels):
                    continue
                distances = {
                    k: np.min(np.linalg.norm(pixels[:, None, :] - model[None, :, :], axis=2), axis=1)
                    for k, model in models.items()
                }
                nearest = np.argmin(np.stack([distances[k] for k in models]), axis=0)
                correct += int(np.sum(np.asarray(list(models))[nearest] == object_id))
                total += len(pixels)
    assert total > 1000
    assert correct / total > 0.95, correct / total
