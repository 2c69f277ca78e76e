from __future__ import annotations

import math

import pytest

from sam2tool.training.run_files import smoothed


def test_smoothed_loss_starts_at_the_first_value_and_follows_the_trend() -> None:
    assert smoothed([3.0, 3.0, 3.0]) == pytest.approx([3.0, 3.0, 3.0])
    values = [10.0, 1.0] * 20 + [0.1] * 40
    curve = smoothed(values)
    assert curve[0] == pytest.approx(10.0)
    assert max(curve[10:40]) < 10.0 and min(curve[10:40]) > 1.0  # the zigzag is damped
    assert curve[-1] == pytest.approx(0.1, rel=0.05)
    assert all(math.isfinite(v) for v in smoothed([0.0, 1.0]))
