"""The pictures: labelled axes, readable ticks and a legend, written as PNG files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from sam2tool.metrics.plots import bar_chart_figure, curves_figure, save_figure, smoothed


def visible_ticks(axes: Axes, axis: str = "y") -> list[str]:
    """The labels of the major ticks inside the axis' limits, as drawn."""
    axes.figure.canvas.draw()
    which = axes.yaxis if axis == "y" else axes.xaxis
    low, high = sorted(axes.get_ylim() if axis == "y" else axes.get_xlim())
    return [
        tick.label1.get_text()
        for tick, location in zip(which.get_major_ticks(), which.get_majorticklocs(), strict=False)
        if low <= location <= high and tick.label1.get_text()
    ]


def legend_texts(figure: Figure) -> list[str]:
    legends = [*figure.legends, *(a.get_legend() for a in figure.axes if a.get_legend() is not None)]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


@pytest.mark.parametrize(
    ("low", "high"),
    [(0.05, 3.0), (0.9, 1.2), (0.2, 2.0), (0.5, 0.5)],
    ids=["decades", "narrow", "one-decade", "flat"],
)
def test_curves_have_labelled_axes_several_loss_ticks_and_a_legend(low: float, high: float) -> None:
    steps = list(range(120))
    loss = [high * (low / high) ** (s / 119) * (1.1 if s % 2 else 1.0) for s in steps]
    figure = curves_figure((steps, loss), ([30, 60, 90, 119], [0.2, 0.41, 0.55, 0.52]))
    loss_axes, jf_axes = figure.axes
    assert loss_axes.get_xlabel() == "optimizer step"
    assert loss_axes.get_ylabel() == "training loss" and jf_axes.get_ylabel() == "validation J&F"
    assert len(visible_ticks(loss_axes)) > 2, visible_ticks(loss_axes)
    assert len(set(visible_ticks(loss_axes))) == len(visible_ticks(loss_axes))  # distinct labels
    assert len(visible_ticks(jf_axes)) > 2 and jf_axes.get_ylim() == (0.0, 1.0)
    assert len(visible_ticks(loss_axes, "x")) > 2
    texts = legend_texts(figure)
    assert "training loss (as logged)" in texts and "training loss (smoothed)" in texts
    assert "validation J&F (last 0.520, best 0.550)" in texts


def test_curves_of_a_run_without_validation_or_with_a_single_step() -> None:
    figure = curves_figure(([0], [2.0]), ([], []))
    assert len(figure.axes) == 1 and figure.axes[0].get_xlim()[0] < 0 < figure.axes[0].get_xlim()[1]
    assert legend_texts(figure) == ["training loss (as logged)", "training loss (smoothed)"]
    only_jf = curves_figure(([], []), ([2], [0.4]))
    assert legend_texts(only_jf) == ["validation J&F (last 0.400, best 0.400)"]


def test_bar_chart_rows_series_undefined_values_and_overall_line(tmp_path: Path) -> None:
    figure = bar_chart_figure(["a", "b", "c"], {"J&F": [0.2, math.nan, 0.9]}, "J&F per video", overall=0.6)
    (axes,) = figure.axes
    assert axes.get_xlabel() == "J&F" and axes.get_ylabel() == "video"
    assert [t.get_text() for t in axes.get_yticklabels()] == ["a", "b", "c"]
    assert axes.get_ylim()[0] > axes.get_ylim()[1]  # the first row on top
    assert len(visible_ticks(axes, "x")) > 2
    assert [text.get_text() for text in axes.texts] == ["0.200", "n/a", "0.900"]
    assert sorted(legend_texts(figure)) == ["J&F", "overall J&F 0.600"]
    assert figure.get_suptitle() == "J&F per video"
    path = save_figure(figure, tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob(".*tmp"))


def test_comparison_has_two_bars_per_row_and_grows_with_the_rows(tmp_path: Path) -> None:
    def chart(rows: int) -> Figure:
        labels = [f"video{i}" for i in range(rows)]
        return bar_chart_figure(labels, {"before": [0.3] * rows, "after": [0.6] * rows}, "before 0.3, after 0.6")

    figure = chart(3)
    assert legend_texts(figure) == ["before", "after"]
    (axes,) = figure.axes
    assert len(axes.patches) == 6
    assert len({tuple(p.get_facecolor()) for p in axes.patches}) == 2
    small = np.asarray(Image.open(save_figure(chart(3), tmp_path / "3.png")))
    large = np.asarray(Image.open(save_figure(chart(30), tmp_path / "30.png")))
    assert large.shape[1] == small.shape[1] and large.shape[0] >= small.shape[0] + 27 * 38


def test_smoothed_loss_starts_at_the_first_value_and_follows_the_trend() -> None:
    assert smoothed([3.0, 3.0, 3.0]) == pytest.approx([3.0, 3.0, 3.0])
    values = [10.0, 1.0] * 20 + [0.1] * 40
    curve = smoothed(values)
    assert curve[0] == pytest.approx(10.0)
    assert max(curve[10:40]) < 10.0 and min(curve[10:40]) > 1.0  # the zigzag is damped
    assert curve[-1] == pytest.approx(0.1, rel=0.05)
    assert all(math.isfinite(v) for v in smoothed([0.0, 1.0]))
