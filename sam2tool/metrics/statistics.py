"""Mean, recall and decay of per-frame values, as DAVIS reports them.

- Mean: the average over frames.
- Recall: the fraction of frames above 0.5.
- Decay: the mean of the first quarter of the frames minus the mean of the last quarter (the
  frames are cut into four bins at ``round(linspace(1, n, 5)) - 1``).

davis2017-evaluation casts the bin boundaries to ``uint8``, so for sequences of more than 255
frames its decay wraps around and is wrong. Here the boundaries are plain integers: decay is
correct for any length, and equal to DAVIS's for sequences of up to 255 frames.

An object with no scored frame has undefined (NaN) statistics; :func:`finite` writes them as JSON
``null``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

BINS = 4


def mean_recall_decay(values: Sequence[float] | np.ndarray, threshold: float = 0.5) -> tuple[float, float, float]:
    """Return ``(mean, recall, decay)`` of per-frame values (NaN entries are ignored)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an empty bin
        mean = float(np.nanmean(values))
        recall = float(np.nanmean(values > threshold))
        bounds = (np.round(np.linspace(1, len(values), BINS + 1) + 1e-10) - 1).astype(np.int64)
        bins = [values[bounds[i] : bounds[i + 1] + 1] for i in range(BINS)]
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[-1]))
    return mean, recall, decay


def finite(value: Any) -> Any:
    """JSON has no NaN: undefined values (no frames to score) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value
