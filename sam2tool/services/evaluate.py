"""What ``evaluate`` does, in its two modes, and the report both write.

- Score mode (:func:`evaluate_predictions`): score folders of predicted masks against ground truth.
- Model mode (:func:`evaluate_checkpoint`): predict the held-out videos of a prepared folder with a
  model, prompted from their ground truth, and score those predictions (with ``baseline``, the
  model before fine-tuning too, and compare).

The report is ``results.json`` (schema below), ``results.csv`` (one row per object, then the
overall row) and ``jf_per_video.png`` (a bar chart of J&F per video), written atomically.

``results.json``::

    {"protocol": "davis" | "sav", "sam2tool_version": str, "ground_truth": str, "predictions": str,
     "overall": {"J&F", "J", "F", "J-Recall", "F-Recall", "J-Decay", "F-Decay"},
     "per_video": [{"video", "J&F", "J", "F", "objects"}],
     "per_object": [{"video", "object", "J&F", "J", "F", "J-Recall", "F-Recall", "J-Decay",
                     "F-Decay", "frames"}]}

Values are fractions in [0, 1] (decay can be negative).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2tool import __version__
from sam2tool.atomic import atomic_write_text
from sam2tool.config.choices import EvalProtocol, PromptKind
from sam2tool.config.loading import load_settings
from sam2tool.data.layout import FRAMES_DIR, MANIFEST_FILE, MASKS_DIR, natural_key, read_split
from sam2tool.data.masks import MaskFolder
from sam2tool.errors import DataError, UsageError
from sam2tool.metrics.evaluation import overall, score_video
from sam2tool.metrics.statistics import finite
from sam2tool.models.prompts import ground_truth_prompts
from sam2tool.models.tracking import load_predictor, track
from sam2tool.training.distributed import environment_rank as environment_rank  # for the CLI: who prints
from sam2tool.training.distributed import ranks_on

RESULT_KEYS = ("J&F", "J", "F", "J-Recall", "F-Recall", "J-Decay", "F-Decay")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """What an ``evaluate`` run wrote: one report per model (or one for the predictions), and where."""

    reports: dict[str, EvaluationReport]
    output: Path


@dataclass
class EvaluationReport:
    """Scores of every object, per video and overall."""

    protocol: EvalProtocol
    ground_truth: Path
    predictions: Path
    per_object: list[dict[str, Any]]

    @property
    def overall(self) -> dict[str, float]:
        """Averages over all objects of all videos."""
        return overall(self.per_object)

    @property
    def per_video(self) -> list[dict[str, Any]]:
        """J&F, J and F of each video (averaged over its objects)."""
        videos: dict[str, list[dict[str, Any]]] = {}
        for row in self.per_object:
            videos.setdefault(str(row["video"]), []).append(row)
        result = []
        for video, rows in videos.items():
            j = sum(float(r["J"]) for r in rows) / len(rows)
            f = sum(float(r["F"]) for r in rows) / len(rows)
            result.append({"video": video, "J&F": (j + f) / 2, "J": j, "F": f, "objects": len(rows)})
        return result

    def to_json(self) -> dict[str, Any]:
        """The ``results.json`` document."""
        return {
            "protocol": self.protocol,
            "sam2tool_version": __version__,
            "ground_truth": str(self.ground_truth),
            "predictions": str(self.predictions),
            "overall": self.overall,
            "per_video": self.per_video,
            "per_object": self.per_object,
        }


def ground_truth_videos(ground_truth: Path, split: str | None) -> tuple[Path, list[str]]:
    """Where the ground-truth masks are and which videos to score.

    ``ground_truth`` may be a folder written by ``prepare-data`` (its ``split``, default val), a
    folder with an ``Annotations/`` subfolder, or a folder of ``<video>/`` mask folders.
    """
    if not ground_truth.is_dir():
        raise UsageError(f"ground-truth folder {ground_truth} does not exist")
    if (ground_truth / MANIFEST_FILE).is_file():
        try:
            return ground_truth / MASKS_DIR, read_split(ground_truth, split or "val")
        except DataError as exc:
            raise UsageError(str(exc)) from None
    root = ground_truth / MASKS_DIR if (ground_truth / MASKS_DIR).is_dir() else ground_truth
    for resolution in ("480p", "Full-Resolution"):  # the DAVIS layout: Annotations/480p/<video>/
        if (root / resolution).is_dir() and not any((root / resolution).glob("*.png")):
            root = root / resolution
            break
    if split is not None:
        raise UsageError(f"--split needs a folder written by prepare-data; {ground_truth} has no {MANIFEST_FILE}")
    videos = sorted((p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)
    if not videos:
        raise DataError(f"{root} has no video folders of ground-truth masks")
    return root, videos


def _score_one(args: tuple[str, Path, Path, EvalProtocol]) -> list[dict[str, Any]]:
    video, gt_root, pred_root, protocol = args
    ground_truth, predictions = MaskFolder(gt_root / video, "ground truth"), MaskFolder(pred_root / video, "prediction")
    return [s.summary() for s in score_video(video, ground_truth, predictions, protocol)]


def score_folders(
    predictions: Path,
    ground_truth: Path,
    protocol: EvalProtocol = "davis",
    split: str | None = None,
    workers: int = 1,
    on_video: Callable[[str, int, int], None] | None = None,
) -> EvaluationReport:
    """Score ``predictions`` against ``ground_truth``, one process per worker.

    Raises:
        UsageError: A folder does not exist.
        DataError: A video or frame is missing from the predictions, or masks do not match.

    """
    if not predictions.is_dir():
        raise UsageError(f"predictions folder {predictions} does not exist")
    gt_root, videos = ground_truth_videos(ground_truth, split)
    missing = [v for v in videos if not (predictions / v).is_dir()]
    if missing:
        raise DataError(f"predictions in {predictions} lack videos: {', '.join(missing[:10])}")
    jobs = [(video, gt_root, predictions, protocol) for video in videos]
    rows: list[dict[str, Any]] = []
    if workers <= 1:
        for index, job in enumerate(jobs):
            if on_video is not None:
                on_video(job[0], index, len(jobs))
            rows += _score_one(job)
    else:
        # Spawned, not forked: OpenCV's thread pool does not survive a fork.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for index, result in enumerate(pool.imap(_score_one, jobs)):
                if on_video is not None:
                    on_video(jobs[index][0], index, len(jobs))
                rows += result
    unscored = sorted({str(r["video"]) for r in rows if not int(r["frames"])})
    if unscored:
        log.warning(
            "%d videos have fewer than 3 ground-truth frames, so none is left once the first and last are "
            "excluded; they are left out of the averages: %s",
            len(unscored),
            ", ".join(unscored[:10]),
        )
    return EvaluationReport(protocol, ground_truth, predictions, rows)


def check_report_folder(output: Path) -> None:
    """Refuse an output that is a file, before any work is done."""
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is a file; give a folder for the report")


def write_report(report: EvaluationReport, output: Path) -> list[Path]:
    """Write ``results.json``, ``results.csv`` and ``jf_per_video.png`` into ``output``."""
    check_report_folder(output)
    output.mkdir(parents=True, exist_ok=True)
    json_path, csv_path, chart_path = output / "results.json", output / "results.csv", output / "jf_per_video.png"
    atomic_write_text(json_path, json.dumps(finite(report.to_json()), indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["video", "object", *RESULT_KEYS, "frames"])
    for row in report.per_object:
        writer.writerow([row["video"], row["object"], *(_cell(row[k]) for k in RESULT_KEYS), row["frames"]])
    totals = report.overall
    writer.writerow(["overall", "", *(_cell(totals[k]) for k in RESULT_KEYS), ""])
    atomic_write_text(csv_path, buffer.getvalue())
    _bar_chart(report.per_video, totals["J&F"], chart_path)
    return [json_path, csv_path, chart_path]


def _cell(value: Any) -> str:
    """A CSV cell: six decimals, empty when undefined (as ``null`` in results.json)."""
    return f"{value:.6f}" if math.isfinite(float(value)) else ""


def _bar_chart(per_video: list[dict[str, Any]], mean: float, path: Path) -> None:
    """A horizontal bar chart of J&F per video (PNG), lowest first."""
    from sam2tool.metrics.plots import bar_chart_figure, save_figure

    rows = sorted(per_video, key=lambda r: _value(r["J&F"]))
    title = f"J&F per video (mean {mean:.3f})" if math.isfinite(mean) else "J&F per video"
    values = {"J&F": [float(r["J&F"]) for r in rows]}
    save_figure(bar_chart_figure([str(r["video"]) for r in rows], values, title, overall=mean), path)


def comparison_chart(before: EvaluationReport, after: EvaluationReport, path: Path) -> None:
    """J&F per video before and after fine-tuning, side by side (PNG), most improved last."""
    from sam2tool.metrics.plots import bar_chart_figure, save_figure

    old = {str(r["video"]): float(r["J&F"]) for r in before.per_video}
    new = {str(r["video"]): float(r["J&F"]) for r in after.per_video}
    videos = sorted(new, key=lambda v: _value(new[v]) - _value(old.get(v)))
    title = f"J&F per video: before {before.overall['J&F']:.3f}, after {after.overall['J&F']:.3f}"
    series = {"before": [old.get(v, math.nan) for v in videos], "after": [new[v] for v in videos]}
    save_figure(bar_chart_figure(videos, series, title), path)


def _value(value: Any) -> float:
    """A score to sort by: undefined (None, NaN) counts as 0."""
    number = float(value) if value is not None else math.nan
    return number if math.isfinite(number) else 0.0


def predict_split(
    predictor: Any,
    root: Path,
    videos: list[str],
    output: Path,
    kind: PromptKind,
    protocol: EvalProtocol,
    on_video: Callable[[str, int, int], None] | None = None,
) -> None:
    """Run the predictor on each video of a prepared folder, prompted from its ground truth."""
    from sam2tool.data.frames import FolderFrames

    for index, video in enumerate(videos):
        if on_video is not None:
            on_video(video, index, len(videos))
        frames = FolderFrames(root / FRAMES_DIR / video)
        names = [frames.name(i) for i in range(len(frames))]
        prompts = ground_truth_prompts(root / MASKS_DIR / video, names, kind, protocol)
        track(predictor, frames, output / video, prompts)


def evaluate_model(
    settings: Any,
    image_size: int,
    root: Path,
    split: str,
    output: Path,
    *,
    checkpoint: str | None = None,
    baseline: bool = False,
    kind: PromptKind = "mask",
    protocol: EvalProtocol = "davis",
    device: str = "auto",
    devices: int = 1,
    workers: int = 1,
    on_video: Callable[[str, int, int], None] | None = None,
) -> dict[str, EvaluationReport]:
    """Predict the held-out videos with the model (and, with ``baseline``, the model before fine-tuning) and score them.

    With ``devices`` above 1 the videos are shared out over that many processes (one per GPU, or
    processes on the CPU; see :mod:`sam2tool.training.distributed`): each predicts its share into
    the same predictions folder, then rank 0 scores them all and writes the reports, the same as
    one process writes. The other ranks return no report.

    Returns:
        ``{"model": report}``, or ``{"baseline": report, "finetuned": report}``; ``{}`` on ranks other than 0.

    Raises:
        UsageError: ``baseline`` without ``checkpoint``, a folder that is not a prepared one, or
            devices that are not there.
        DataError: A video cannot be predicted or scored.

    """
    if not (root / MANIFEST_FILE).is_file():
        raise UsageError(f"{root} is not a folder written by prepare-data (no {MANIFEST_FILE}); use --data")
    if baseline and checkpoint is None:
        raise UsageError("--baseline compares --checkpoint with the config's model.checkpoint; give --checkpoint")
    videos = read_split(root, split)
    if not videos:
        raise DataError(f"{root}/splits/{split}.txt lists no video to evaluate")
    runs: dict[str, Any] = {}
    if baseline:
        runs["baseline"] = settings
    tuned = settings.model_copy(deep=True)
    if checkpoint is not None:
        tuned.model.checkpoint = checkpoint
    runs["finetuned" if baseline else "model"] = tuned
    reports: dict[str, EvaluationReport] = {}
    with ranks_on(devices, device) as ranks:
        share = ranks.shard(videos)
        for name, run_settings in runs.items():
            predictions = output / name / "predictions"
            error: Exception | None = None
            try:
                if share:  # a rank with no video left (more devices than videos) only waits
                    predictor = load_predictor(run_settings, image_size, ranks.device)
                    predict_split(predictor, root, share, predictions, kind, protocol, on_video)
                    del predictor
            except Exception as exc:  # every rank learns of it: none waits for one that failed
                error = exc
            if not ranks.succeeded(error):
                return {}
            if ranks.is_zero:
                reports[name] = score_folders(predictions, root, protocol, split, workers)
                write_report(reports[name], output / name)
    if baseline and reports:
        comparison = {name: report.overall for name, report in reports.items()}
        atomic_write_text(output / "comparison.json", json.dumps(finite(comparison), indent=1) + "\n")
        comparison_chart(reports["baseline"], reports["finetuned"], output / "comparison.png")
    return reports


def evaluate_predictions(
    predictions: Path,
    ground_truth: Path,
    output: Path | None = None,
    *,
    protocol: EvalProtocol = "davis",
    split: str | None = None,
    workers: int = 1,
    on_video: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    """Score mode: score ``predictions`` against ``ground_truth`` and write the report.

    The report goes to ``output``, by default ``<predictions>_evaluation`` beside the predictions.
    """
    destination = output or predictions.parent / f"{predictions.name}_evaluation"
    check_report_folder(destination)
    report = score_folders(predictions, ground_truth, protocol, split, workers, on_video)
    write_report(report, destination)
    return Evaluation({"predictions": report}, destination)


def evaluate_checkpoint(
    config: Path,
    output: Path | None = None,
    *,
    overrides: Sequence[str] = (),
    data: Path | None = None,
    split: str | None = None,
    checkpoint: str | None = None,
    baseline: bool = False,
    kind: PromptKind = "mask",
    protocol: EvalProtocol = "davis",
    device: str = "auto",
    devices: int = 1,
    workers: int = 1,
    on_video: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    """Model mode: evaluate the model of ``config`` (or ``checkpoint``) on held-out videos.

    ``overrides`` (``key.path=value``) go on top of the config. The videos are the ``split``
    (default ``dataset.val_split``) of ``data`` (default ``dataset.root``); the reports go to
    ``output``, by default ``evaluation``. With ``devices`` above 1 the videos are shared out over
    that many processes and rank 0 writes the reports (the other ranks return none).

    Raises:
        UsageError: The config sets no data folder and none is given, or see :func:`evaluate_model`.

    """
    settings = load_settings(config, overrides)
    root = data or settings.dataset.root
    if root is None:
        raise UsageError(f"{config} sets no dataset.root; pass --data")
    destination = output or Path("evaluation")
    check_report_folder(destination)
    reports = evaluate_model(
        settings,
        settings.dataset.image_size,
        root,
        split or settings.dataset.val_split,
        destination,
        checkpoint=checkpoint,
        baseline=baseline,
        kind=kind,
        protocol=protocol,
        device=device,
        devices=devices,
        workers=workers,
        on_video=on_video,
    )
    return Evaluation(reports, destination)
