"""Scoring prediction folders: protocols, bad inputs, the report files and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sam2tool.cli import app
from sam2tool.config.choices import EvalProtocol
from sam2tool.data.images import read_label_mask, write_label_mask
from sam2tool.data.masks import MaskFolder
from sam2tool.errors import DataError
from sam2tool.metrics.evaluation import ObjectScores, score_video
from sam2tool.services.evaluate import score_folders, write_report
from tests.conftest import prepare_synthetic

runner = CliRunner()
evaluator = pytest.importorskip("vos_benchmark.evaluator")


def score_folders_of(video: str, gt: Path, pred: Path, protocol: EvalProtocol) -> list[ObjectScores]:
    return score_video(video, MaskFolder(gt, "ground truth"), MaskFolder(pred, "prediction"), protocol)


def blob(t: int, k: int, shift: int = 0) -> np.ndarray:
    labels = np.zeros((40, 60), dtype=np.uint8)
    labels[4 + 12 * (k - 1) : 12 + 12 * (k - 1), 5 + 2 * t + shift : 20 + 2 * t + shift] = k
    return labels


def write_video(
    folder: Path, frames: int, objects: tuple[int, ...], shift: int = 0, start: dict[int, int] | None = None
) -> None:
    for t in range(frames):
        labels = np.zeros((40, 60), dtype=np.uint8)
        for k in objects:
            if t >= (start or {}).get(k, 0):
                labels = np.maximum(labels, blob(t, k, shift))
        write_label_mask(folder / f"{t:05d}.png", labels)


def test_davis_protocol_equals_the_reference_and_skips_first_and_last(tmp_path: Path) -> None:
    write_video(tmp_path / "gt/v", 6, (1, 2))
    write_video(tmp_path / "pred/v", 6, (1, 2), shift=2)
    scores = score_folders_of("v", tmp_path / "gt/v", tmp_path / "pred/v", "davis")
    assert [s.object for s in scores] == [1, 2]
    assert scores[0].frames == ["00001", "00002", "00003", "00004"]
    reference = evaluator.Evaluator()
    for stem in scores[0].frames:
        reference.feed_frame(
            read_label_mask(tmp_path / f"pred/v/{stem}.png"), read_label_mask(tmp_path / f"gt/v/{stem}.png")
        )
    for score in scores:
        assert np.allclose(score.j, reference.object_iou[score.object], atol=1e-6)
        assert np.allclose(score.f, reference.boundary_f[score.object], atol=1e-6)


def test_objects_come_from_the_first_frame_and_void_is_background(tmp_path: Path) -> None:
    write_video(tmp_path / "gt/v", 4, (1,))
    labels = read_label_mask(tmp_path / "gt/v/00001.png")
    labels[30:40, 50:60] = 255
    write_label_mask(tmp_path / "gt/v/00001.png", labels)
    write_video(tmp_path / "pred/v", 4, (1,))
    (score,) = score_folders_of("v", tmp_path / "gt/v", tmp_path / "pred/v", "davis")
    assert score.j == [1.0, 1.0] and score.f == [1.0, 1.0]


def test_sav_protocol_scores_objects_that_appear_later(tmp_path: Path) -> None:
    write_video(tmp_path / "gt/v", 6, (1, 2), start={2: 3})
    write_video(tmp_path / "pred/v", 6, (1, 2), start={2: 3})
    scores = score_folders_of("v", tmp_path / "gt/v", tmp_path / "pred/v", "sav")
    assert [s.object for s in scores] == [1, 2]
    assert scores[1].frames == ["00003", "00004"]
    assert scores[1].j == [1.0, 1.0]
    with pytest.raises(DataError, match=r"ids \[2\] that are not objects"):  # DAVIS knows only frame 0's objects
        score_folders_of("v", tmp_path / "gt/v", tmp_path / "pred/v", "davis")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing_frame", r"predictions for video v lack frame 00002"),
        ("extra_id", r"has ids \[3\] that are not objects of the ground truth"),
        ("wrong_size", r"is 30x20 but the ground truth is 60x40"),
        ("corrupt", r"prediction mask .*00002\.png cannot be decoded"),
    ],
)
def test_bad_predictions_are_named(tmp_path: Path, damage: str, message: str) -> None:
    write_video(tmp_path / "gt/v", 5, (1, 2))
    write_video(tmp_path / "pred/v", 5, (1, 2))
    target = tmp_path / "pred/v/00002.png"
    if damage == "missing_frame":
        target.unlink()
    elif damage == "extra_id":
        write_label_mask(target, np.full((40, 60), 3, dtype=np.uint8))
    elif damage == "wrong_size":
        write_label_mask(target, np.zeros((20, 30), dtype=np.uint8))
    else:
        target.write_bytes(b"garbage")
    with pytest.raises(DataError, match=message):
        score_folders_of("v", tmp_path / "gt/v", tmp_path / "pred/v", "davis")


def test_missing_video_and_folders(tmp_path: Path) -> None:
    write_video(tmp_path / "gt/a", 4, (1,))
    write_video(tmp_path / "gt/b", 4, (1,))
    write_video(tmp_path / "pred/a", 4, (1,))
    with pytest.raises(DataError, match="lack videos: b"):
        score_folders(tmp_path / "pred", tmp_path / "gt")
    result = runner.invoke(
        app, ["evaluate", "--predictions", str(tmp_path / "nope"), "--ground-truth", str(tmp_path / "gt")]
    )
    assert result.exit_code == 2
    assert "predictions folder" in result.output and "does not exist" in result.output


def test_report_files_and_workers(tmp_path: Path) -> None:
    for video, shift in (("a", 0), ("b", 3), ("c", 6)):
        write_video(tmp_path / f"gt/{video}", 6, (1, 2))
        write_video(tmp_path / f"pred/{video}", 6, (1, 2), shift=shift)
    one = score_folders(tmp_path / "pred", tmp_path / "gt", workers=1)
    two = score_folders(tmp_path / "pred", tmp_path / "gt", workers=2)
    assert one.per_object == two.per_object
    files = write_report(one, tmp_path / "out")
    assert [f.name for f in files] == ["results.json", "results.csv", "jf_per_video.png"]
    data = json.loads(files[0].read_text())
    assert data["protocol"] == "davis"
    assert set(data["overall"]) == {"J&F", "J", "F", "J-Recall", "F-Recall", "J-Decay", "F-Decay"}
    assert data["overall"]["J"] == pytest.approx(np.mean([r["J"] for r in data["per_object"]]))
    assert data["overall"]["J&F"] == pytest.approx((data["overall"]["J"] + data["overall"]["F"]) / 2)
    assert [v["video"] for v in data["per_video"]] == ["a", "b", "c"]
    assert data["per_video"][0]["J&F"] == 1.0 and data["per_video"][2]["J&F"] < data["per_video"][1]["J&F"]
    assert all(0.0 <= r["J"] <= 1.0 and 0.0 <= r["F"] <= 1.0 for r in data["per_object"])
    rows = list(csv.reader(files[1].read_text().splitlines()))
    assert rows[0][:3] == ["video", "object", "J&F"] and rows[-1][0] == "overall" and len(rows) == 8
    assert files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_scores_a_prepared_folder_split(tmp_path: Path) -> None:
    data = prepare_synthetic(tmp_path / "data", val_fraction=0.4)
    val = (data / "splits/val.txt").read_text().split()
    # Perfect copies of the ground truth score 1.
    import shutil

    shutil.copytree(data / "Annotations", tmp_path / "pred")
    result = runner.invoke(
        app, ["evaluate", "--predictions", str(tmp_path / "pred"), "--ground-truth", str(data), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {r["video"] for r in report["per_object"]} == set(val)
    assert report["overall"]["J&F"] == 1.0
    assert (tmp_path / "pred_evaluation/results.json").is_file()


def test_davis_layout_hidden_folders_and_short_videos(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gt = tmp_path / "DAVIS" / "Annotations" / "480p"
    write_video(gt / "long", 6, (1,))
    write_video(gt / "short", 2, (1,))
    (gt / ".ipynb_checkpoints").mkdir()
    write_video(tmp_path / "pred/long", 6, (1,), shift=2)
    write_video(tmp_path / "pred/short", 2, (1,))
    import logging

    with caplog.at_level(logging.WARNING, logger="sam2tool"):
        report = score_folders(tmp_path / "pred", tmp_path / "DAVIS")
    assert {r["video"] for r in report.per_object} == {"long", "short"}
    assert "fewer than 3 ground-truth frames" in caplog.text and "short" in caplog.text
    long_row = next(r for r in report.per_object if r["video"] == "long")
    assert report.overall["J"] == pytest.approx(long_row["J"])  # the unscored video is left out
    files = write_report(report, tmp_path / "out")
    short_row = next(r for r in csv.reader(files[1].read_text().splitlines()) if r[0] == "short")
    assert short_row[2:9] == [""] * 7


def test_evaluate_usage_errors_come_before_any_work(tmp_path: Path) -> None:
    write_video(tmp_path / "gt/a", 4, (1,))
    write_video(tmp_path / "pred/a", 4, (1,))
    (tmp_path / "afile").write_text("x")
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--predictions",
            str(tmp_path / "pred"),
            "--ground-truth",
            str(tmp_path / "gt"),
            "--output",
            str(tmp_path / "afile"),
        ],
    )
    assert result.exit_code == 2 and "is a file" in result.output
    result = runner.invoke(app, ["evaluate", "--config", str(tmp_path / "afile"), "--device", "bogus"])
    assert result.exit_code == 2
