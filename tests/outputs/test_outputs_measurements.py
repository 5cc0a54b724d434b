"""Mask measurements with known numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.outputs import mask_measurements


def _boxes(shape: tuple[int, int, int], boxes: dict[int, tuple[int, int]]) -> np.ndarray:
    """Mask with an (h, w) box of foreground on each slice in ``boxes``."""
    mask = np.zeros(shape, np.uint8)
    for k, (h, w) in boxes.items():
        mask[k, :h, :w] = 1
    return mask


MEASUREMENT_CASES = [
    # (name, mask, spacing (slice, row, column), voxels, volume_ml, per-slice area_px, per-slice area_mm2)
    ("unit_cube_cm", _boxes((1, 10, 10), {0: (10, 10)}), (10.0, 1.0, 1.0), 100, 1.0, [100], [100.0]),
    ("ct_like", _boxes((3, 8, 8), {0: (2, 3), 2: (4, 5)}), (8.0, 0.5, 0.25), 26, 0.026, [6, 0, 20], [0.75, 0.0, 2.5]),
    ("empty", np.zeros((2, 4, 4), bool), (1.0, 1.0, 1.0), 0, 0.0, [0, 0], [0.0, 0.0]),
    ("labels_count_as_foreground", np.full((1, 2, 2), 3, np.uint8), (2.0, 1.0, 1.5), 4, 4 * 3.0 / 1000, [4], [6.0]),
]


@pytest.mark.parametrize(
    ("name", "mask", "spacing", "voxels", "volume_ml", "areas_px", "areas_mm2"),
    MEASUREMENT_CASES,
    ids=[c[0] for c in MEASUREMENT_CASES],
)
def test_mask_measurements(name, mask, spacing, voxels, volume_ml, areas_px, areas_mm2):
    result = mask_measurements(mask, spacing)
    assert result["voxels"] == voxels and isinstance(result["voxels"], int)
    assert result["volume_ml"] == pytest.approx(volume_ml)
    assert result["spacing_mm"] == list(spacing)
    assert [s["index"] for s in result["per_slice"]] == list(range(mask.shape[0]))
    assert [s["area_px"] for s in result["per_slice"]] == areas_px
    assert [s["area_mm2"] for s in result["per_slice"]] == pytest.approx(areas_mm2)
    json.dumps(result)  # plain Python types only


@pytest.mark.parametrize(
    ("mask", "spacing", "message"),
    [
        (np.zeros((4, 4)), (1, 1, 1), r"\(N, H, W\)"),
        (np.zeros((1, 4, 4)), (1, 1), "three positive"),
        (np.zeros((1, 4, 4)), (1, 0, 1), "three positive"),
        (np.zeros((1, 4, 4)), (1, math.nan, 1), "three positive"),
    ],
)
def test_mask_measurements_bad_input(mask, spacing, message):
    with pytest.raises(ValueError, match=message):
        mask_measurements(mask, spacing)
