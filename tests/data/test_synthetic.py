"""The synthetic format: object counts, the two styles, and the options that choose them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.data.formats.synthetic_render import render_video
from sam2tool.data.layout import load_manifest

runner = CliRunner()


def prepare(folder: Path, *options: str) -> tuple[int, str]:
    command = ["prepare-data", str(folder), "--format", "synthetic", "--num-videos", "12", "--frames", "3"]
    result = runner.invoke(app, [*command, "--size", "64", *options])
    return result.exit_code, result.output


def object_counts(folder: Path) -> list[int]:
    return [len(video.objects) for video in load_manifest(folder).videos.values()]


def test_objects_take_a_count_or_a_range(tmp_path: Path) -> None:
    assert prepare(tmp_path / "fixed", "--objects", "3")[0] == 0
    assert set(object_counts(tmp_path / "fixed")) == {3}
    assert prepare(tmp_path / "range", "--objects", "1-3")[0] == 0
    assert set(object_counts(tmp_path / "range")) == {1, 2, 3}
    assert prepare(tmp_path / "default")[0] == 0
    assert set(object_counts(tmp_path / "default")) == {2, 3}


@pytest.mark.parametrize(
    ("value", "message"), [("0", "1 <= MIN <= MAX <= 8"), ("3-1", "1 <= MIN"), ("two", "N or MIN-MAX")]
)
def test_bad_object_counts_exit_2(tmp_path: Path, value: str, message: str) -> None:
    code, output = prepare(tmp_path / "out", "--objects", value)
    assert code == 2 and message in output and f"--objects '{value}'" in output
    assert not (tmp_path / "out").exists()


def test_the_default_style_does_not_change_with_a_range_given_elsewhere() -> None:
    """Fixing the count draws it from its own generator: the other draws of a video stay the same."""
    images, labels = render_video(4, 3, 64, seed=0)
    again, same = render_video(4, 3, 64, seed=0, objects=(2, 3))
    assert np.array_equal(images, again) and np.array_equal(labels, same)


def test_camouflage_puts_objects_on_a_cluttered_background(tmp_path: Path) -> None:
    def clutter_of(style: str) -> float:
        clutter = []
        for index in range(6):
            images, labels = render_video(index, 1, 96, seed=1, style=style)
            image, label = images[0].astype(float), labels[0]
            background = (label[:, 1:] == 0) & (label[:, :-1] == 0)
            steps = np.abs(np.diff(image, axis=1)).sum(axis=-1)  # neighbouring pixels, left to right
            clutter.append(float((steps > 60)[background].mean()))  # share of sharp edges in the background
        return float(np.mean(clutter))

    assert clutter_of("camouflage") > 0.05 > 0.01 > clutter_of("shapes")
    code, output = prepare(tmp_path / "camo", "--style", "camouflage")
    assert code == 0, output
    assert "camouflage" in next(iter(load_manifest(tmp_path / "camo").videos.values())).source
    code, output = prepare(tmp_path / "bad", "--style", "neon")
    assert code == 2 and "neon" in output


def test_camouflage_objects_start_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every object is whole in the first frame, where evaluate and the demo prompt it with its mask."""
    from sam2tool.data.formats import synthetic_render as synthetic

    placed: list[list[object]] = []
    place = synthetic._apart_at_start
    monkeypatch.setattr(synthetic, "_apart_at_start", lambda *args: placed.append(place(*args)) or placed[-1])
    size = 128
    first_labels = [render_video(index, 2, size, seed=3, style="camouflage")[1][0] for index in range(12)]
    assert len(placed) == 12
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for shapes, labels in zip(placed, first_labels, strict=True):
        footprints = np.stack([synthetic._footprint(shape, 0, size, xs, ys)[0] for shape in shapes])
        assert footprints.sum(axis=0).max() == 1  # no object covers another
        for index, footprint in enumerate(footprints, start=1):
            assert np.array_equal(labels == index, footprint)  # what is drawn is the whole object
