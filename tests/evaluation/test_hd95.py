"""HD95 scores empty predictions instead of dropping them from the mean."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.evaluation import HD95Metric


def _square(size: int = 32, top: int = 5, bottom: int = 10) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., top:bottom, 5:10] = 1
    return mask


EMPTY = torch.zeros(1, 1, 32, 32)
DIAGONAL = math.hypot(32, 32)


@pytest.mark.parametrize(
    "pred, label, expected",
    [
        (_square(), _square(), 0.0),
        (_square(bottom=12), _square(), 2.0),
        (EMPTY, _square(), DIAGONAL),  # missed: MONAI alone gives NaN and the mean skips the case
        (_square(), EMPTY, DIAGONAL),  # spurious
        (EMPTY, EMPTY, 0.0),
    ],
)
def test_hd95_per_case(pred, label, expected):
    assert HD95Metric()(pred, label).item() == pytest.approx(expected)


def test_missed_case_counts_in_the_mean():
    metric = HD95Metric()
    metric(torch.cat([_square(bottom=12), EMPTY]), torch.cat([_square(), _square()]))
    assert metric.aggregate().item() == pytest.approx((2.0 + DIAGONAL) / 2)
