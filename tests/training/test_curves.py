"""curves.png: one picture of a run's rows, with or without validation."""

from __future__ import annotations

import warnings

import pytest
from PIL import Image

from pipeline.training.curves import write_curves

TRAINED = [{"epoch": 1, "loss": 0.9, "lr": 1e-3}, {"epoch": 2, "loss": 0.5, "lr": 5e-4}]
VALIDATED = [{**row, "val_iou": 0.5 + 0.2 * i, "val_dice": 0.6 + 0.2 * i} for i, row in enumerate(TRAINED)]


@pytest.mark.parametrize(
    "history, width",
    [
        (TRAINED[:1], 810),  # before the first validation (--val_interval 2): no metrics yet
        (TRAINED, 810),
        (VALIDATED, 810),
        ([{**row, "val_hd95": 3.0} for row in VALIDATED], 1170),  # a third panel for HD95
    ],
)
def test_curves_are_drawn_without_warnings(tmp_path, history, width):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when a legend has nothing to name
        path = write_curves(history, tmp_path / "curves.png", title="unet")
    with Image.open(path) as picture:
        assert picture.width == width
    assert list(tmp_path.iterdir()) == [path]  # written atomically: no temporary file left
