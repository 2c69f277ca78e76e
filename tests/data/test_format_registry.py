"""Formats describe themselves: a new one is a class and a register() call, and prepare-data reads it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from sam2tool.cli.data_commands import prepare_data_command
from sam2tool.data.formats import FORMATS, register
from sam2tool.data.formats.base import SourceFormat, SourceFrame, SourceVideo, option
from sam2tool.data.images import read_label_mask
from sam2tool.data.layout import load_manifest, read_split
from sam2tool.errors import UsageError
from sam2tool.services.prepare_data import PrepareOptions, prepare_data
from tests.conftest import REPO

runner = CliRunner()


# A toy format: a folder of <video>.txt files, one grey level a line (one frame each), an object in
# the top-left corner of every frame, and val.txt naming the data set's own validation videos.
@dataclass(frozen=True)
class LinesOptions:
    square: int = option("Lines: side of the object's square in pixels.", 8, min=1)


class LinesFormat(SourceFormat[LinesOptions]):
    name = "lines"
    summary = "a folder of <video>.txt, one grey level a line; val.txt names the val videos"
    Options = LinesOptions

    def videos(self, source: Path) -> Iterator[SourceVideo]:
        for path in sorted(p for p in source.glob("*.txt") if p.name != "val.txt"):
            frames = [
                SourceFrame(t, f"{path.name} line {t + 1}", partial(self.frame, int(grey)), self.mask)
                for t, grey in enumerate(path.read_text().split())
            ]
            yield SourceVideo(path.stem, path.name, frames)

    def splits(self, source: Path) -> dict[str, list[str]]:
        return {"val": (source / "val.txt").read_text().split()}

    def frame(self, grey: int) -> tuple[np.ndarray, None]:
        return np.full((32, 32, 3), grey, dtype=np.uint8), None

    def mask(self, height: int, width: int) -> np.ndarray:
        labels = np.zeros((height, width), dtype=np.uint8)
        labels[: self.options.square, : self.options.square] = 1
        return labels


@pytest.fixture
def lines() -> Iterator[None]:
    """LinesFormat registered, for this test only."""
    register(LinesFormat)
    try:
        yield
    finally:
        del FORMATS[LinesFormat.name]


def make_lines(root: Path) -> Path:
    root.mkdir(parents=True)
    for name, greys in {"a": "10 20 30", "b": "40 50", "c": "60 70 80 90"}.items():
        (root / f"{name}.txt").write_text(greys.replace(" ", "\n"))
    (root / "val.txt").write_text("b\n")
    return root


def check_output(output: Path, square: int) -> None:
    manifest = load_manifest(output)
    assert manifest.source_format == "lines"
    assert {name: len(video.frames) for name, video in manifest.videos.items()} == {"a": 3, "b": 2, "c": 4}
    for video in manifest.videos.values():
        assert video.annotated == video.frames and video.objects == {1: video.frames}
    frame = np.array(Image.open(output / "JPEGImages" / "c" / "00003.jpg"))
    assert frame.shape == (32, 32, 3) and abs(int(frame.mean()) - 90) <= 2
    labels = read_label_mask(output / "Annotations" / "c" / "00003.png")
    assert int((labels == 1).sum()) == square * square and set(np.unique(labels)) == {0, 1}
    assert read_split(output, "val") == ["b"] and read_split(output, "train") == ["a", "c"]  # its own split


@pytest.mark.usefixtures("lines")
def test_a_registered_format_is_read_by_the_service(tmp_path: Path) -> None:
    source = make_lines(tmp_path / "lines")
    prepare_data(source, tmp_path / "out", PrepareOptions(format="lines", format_options=LinesOptions(square=4)))
    check_output(tmp_path / "out", 4)
    prepare_data(source, tmp_path / "default", PrepareOptions(format="lines"))  # its options' defaults
    check_output(tmp_path / "default", 8)
    with pytest.raises(UsageError, match=r"source folder .* does not exist"):
        prepare_data(tmp_path / "none", tmp_path / "x", PrepareOptions(format="lines"))


@pytest.mark.usefixtures("lines")
def test_a_registered_format_is_offered_by_the_command_line(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command("prepare-data")(prepare_data_command())
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "lines: a folder of <video>.txt, one grey level a line" in result.output
    assert "--square" in result.output and "Lines: side of the object's square in pixels." in result.output
    source = make_lines(tmp_path / "lines")
    result = runner.invoke(app, [str(source), str(tmp_path / "out"), "--format", "lines", "--square", "5"])
    assert result.exit_code == 0, result.output
    check_output(tmp_path / "out", 5)
    result = runner.invoke(app, [str(tmp_path / "out2"), "--format", "lines"])
    assert result.exit_code == 2 and "--format lines takes SOURCE OUTPUT, got 1 path(s)" in result.output
    result = runner.invoke(app, [str(source), str(tmp_path / "out3"), "-f", "lines", "--square", "0"])
    assert result.exit_code == 2 and not (tmp_path / "out3").exists()


def test_a_format_must_describe_itself_to_be_registered() -> None:
    class Unnamed(LinesFormat):
        name = ""

    with pytest.raises(TypeError, match="needs a name and a summary"):
        register(Unnamed)
    with pytest.raises(ValueError, match="'davis' is registered already"):
        register(FORMATS["davis"])

    @dataclass(frozen=True)
    class Plain:
        square: int = 8

    class PlainOptions(LinesFormat):
        name = "plain"
        Options = Plain

    with pytest.raises(TypeError, match=r"Options\.square is not declared with option\(\)"):
        register(PlainOptions)

    @dataclass(frozen=True)
    class Sized:
        size: int = option("Sized: what synthetic's --size is.", 8)

    class Clash(LinesFormat):
        name = "clash"
        Options = Sized

    with pytest.raises(ValueError, match="has the option 'size' of format 'synthetic'"):
        register(Clash)
    assert list(FORMATS) == ["davis", "ytvos", "sav", "coco", "synthetic"]


def test_listing_the_formats_imports_no_numpy() -> None:
    """--help lists every format and its options: the format modules import their readers' libraries lazily."""
    code = "import sys, sam2tool.cli; print(sorted(m for m in ('numpy', 'cv2', 'PIL') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
