"""The pictures sam2tool writes, drawn with matplotlib: training curves and J&F bar charts.

- ``curves.png`` of a training run (:func:`curves_figure`): the training loss, as logged and
  smoothed, and the validation J&F, against the optimizer step.
- ``jf_per_video.png`` of an evaluation and ``comparison.png`` of ``evaluate --baseline``
  (:func:`bar_chart_figure`): J&F per video, one bar per series.

Every picture is first built as a :class:`~matplotlib.figure.Figure` (what the tests inspect),
then written by :func:`save_figure`, atomically. Figures are rendered by the Agg canvas directly,
without pyplot or a global backend, so no display is needed and nothing global changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from sam2tool.atomic import atomic_path

#: Colours of the series (matplotlib's default cycle): blue for the model, grey for a baseline.
BLUE, PALE_BLUE, ORANGE, GREY = "#1f77b4", "#aec7e8", "#ff7f0e", "#a0a0a0"
#: Resolution of the PNG files (pixels per inch of the figure sizes below).
DPI = 100
#: Height of one bar of a bar chart, in inches, and the most inches a chart grows to.
BAR_INCHES, MAX_INCHES = 0.22, 600.0


def smoothed(values: Sequence[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average in log space (as TensorBoard smooths curves), bias-corrected."""
    out, average = [], 0.0
    for index, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * math.log(max(value, 1e-8))
        out.append(math.exp(average / (1 - weight**index)))
    return out


def curves_figure(loss: tuple[Sequence[int], Sequence[float]], jf: tuple[Sequence[int], Sequence[float]]) -> Figure:
    """The training curves: ``loss`` and validation ``jf``, each ``(steps, values)``, on two y axes.

    The loss axis is logarithmic when the loss spans a factor of ten or more (ticks at 1, 2 and 5
    times powers of ten), linear otherwise; J&F runs from 0 to 1 on the right.
    """
    figure = Figure(figsize=(9, 5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_xlabel("optimizer step")
    axes.grid(True, color="#e6e6e6")
    handles = []
    loss_steps, losses = list(loss[0]), [max(float(v), 1e-8) for v in loss[1]]
    if losses:
        handles += axes.plot(loss_steps, losses, color=PALE_BLUE, linewidth=1, label="training loss (as logged)")
        handles += axes.plot(loss_steps, smoothed(losses), color=BLUE, linewidth=2, label="training loss (smoothed)")
        axes.set_ylabel("training loss", color=BLUE)
        if max(losses) >= 10 * min(losses):
            axes.set_yscale("log")
            axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axes.yaxis.set_minor_locator(NullLocator())
    else:
        axes.set_yticks([])
    jf_steps, scores = list(jf[0]), [float(v) for v in jf[1]]
    if scores:
        right = axes.twinx()
        finite = [v for v in scores if math.isfinite(v)]
        label = "validation J&F" + (f" (last {finite[-1]:.3f}, best {max(finite):.3f})" if finite else "")
        handles += right.plot(jf_steps, scores, color=ORANGE, linewidth=2, marker="o", label=label)
        right.set_ylim(0.0, 1.0)
        right.set_ylabel("validation J&F", color=ORANGE)
    steps = loss_steps + jf_steps
    if steps and min(steps) == max(steps):
        axes.set_xlim(min(steps) - 1, max(steps) + 1)
    figure.suptitle("Training loss and validation J&F")
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=9)
    return figure


def bar_chart_figure(
    labels: Sequence[str], series: Mapping[str, Sequence[float]], title: str, overall: float | None = None
) -> Figure:
    """Horizontal bars of J&F, one row per label and one bar per series in each row (top row first).

    Undefined values (NaN) get no bar and the label "n/a". A dashed line marks ``overall`` (the
    J&F of the whole evaluation) when it is given and defined.
    """
    rows, names = len(labels), list(series)
    height = min(1.6 + BAR_INCHES * max(rows, 1) * max(len(names), 1) * 1.2, MAX_INCHES)
    figure = Figure(figsize=(9, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / max(len(names), 1)
    colours = [BLUE] if len(names) == 1 else [GREY, BLUE, ORANGE][: len(names)]
    positions = range(rows)
    for index, (name, colour) in enumerate(zip(names, colours, strict=False)):
        values = [float(v) for v in series[name]]
        offsets = [p - 0.4 + width * (index + 0.5) for p in positions]
        drawn = [v if math.isfinite(v) else 0.0 for v in values]
        bars = axes.barh(offsets, drawn, height=width * 0.9, color=colour, label=name)
        axes.bar_label(bars, [f"{v:.3f}" if math.isfinite(v) else "n/a" for v in values], padding=3, fontsize=8)
    if overall is not None and math.isfinite(overall):
        axes.axvline(overall, color="black", linestyle="--", linewidth=1, label=f"overall J&F {overall:.3f}")
    axes.set_yticks(list(positions), [label[:40] for label in labels], fontsize=8)
    axes.set_ylim(rows - 0.5, -0.5)
    axes.set_xlim(0.0, 1.1)
    axes.set_xticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_xlabel("J&F")
    axes.set_ylabel("video")
    axes.grid(True, axis="x", color="#e6e6e6")
    axes.set_axisbelow(True)
    figure.suptitle(title)
    handles, _ = axes.get_legend_handles_labels()
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` as a PNG, atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path
