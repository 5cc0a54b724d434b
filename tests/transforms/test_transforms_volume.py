"""VolumeCleanup: 3D largest components, small islands and per-slice holes on a synthetic chest mask."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.transforms import VolumeCleanup

SPACING = (8.0, 1.0, 1.0)  # 8 mm slices, 1 mm pixels: one voxel is 0.008 mL


def chest_mask() -> dict[str, np.ndarray]:
    """Two lungs (one with a vessel hole), a gas bubble below them and one-voxel speckle outside the body."""
    shape = (12, 64, 64)
    parts = {name: np.zeros(shape, bool) for name in ("left", "right", "hole", "bubble", "speckle")}
    parts["left"][1:9, 10:50, 6:28] = True
    parts["right"][1:9, 10:50, 36:58] = True
    parts["hole"][4, 30:33, 15:18] = True  # enclosed in the left lung on one slice
    parts["bubble"][10:12, 40:48, 30:38] = True  # two slices below the lung bases
    parts["speckle"][[0, 5, 11], [2, 60, 1], [62, 3, 1]] = True
    parts["left"] &= ~parts["hole"]
    return parts


def _ml(mask: np.ndarray) -> float:
    return float(mask.sum()) * float(np.prod(SPACING)) / 1000.0


@pytest.mark.parametrize(
    "settings, kept, expected_removed",
    [
        ({}, ["left", "right", "bubble", "speckle"], []),
        ({"keep_largest": 2}, ["left", "right"], ["bubble", "speckle"]),
        ({"min_volume_ml": 0.1}, ["left", "right", "bubble"], ["speckle"]),
        (
            {"keep_largest": 2, "min_volume_ml": 0.1, "fill_holes": True},
            ["left", "right", "hole"],
            ["bubble", "speckle"],
        ),
        ({"keep_largest": 1}, ["right"], ["left", "bubble", "speckle"]),  # the left lung lost its hole
        ({"min_fraction": 0.1}, ["left", "right"], ["bubble", "speckle"]),  # the bubble is 8 % of a lung
    ],
)
def test_cleanup_table(settings, kept, expected_removed):
    parts = chest_mask()
    predicted = parts["left"] | parts["right"] | parts["bubble"] | parts["speckle"]
    cleaned, info = VolumeCleanup(**settings)(predicted.astype(np.uint8), SPACING)
    expected = np.zeros_like(predicted)
    for name in kept:
        expected |= parts[name]
    np.testing.assert_array_equal(cleaned.astype(bool), expected)
    assert cleaned.dtype == np.uint8 and info["components_found"] == 6  # two lungs, the bubble, three specks
    assert info["removed_ml"] == pytest.approx(sum(_ml(parts[n]) for n in expected_removed), abs=0.01)
    assert info["filled_ml"] == pytest.approx(_ml(parts["hole"]) if "hole" in kept else 0.0, abs=0.01)


@pytest.mark.parametrize("settings", [{"min_volume_ml": 2.0}, {"min_fraction": 0.1}])
def test_touching_lungs_are_one_component(settings):
    """Lungs that touch are one component: the second largest is then the bubble, which must still go."""
    parts = chest_mask()
    bridge = np.zeros_like(parts["left"])
    bridge[4, 20:24, 28:36] = True
    predicted = parts["left"] | parts["right"] | bridge | parts["bubble"]
    cleaned, info = VolumeCleanup(keep_largest=2, **settings)(predicted, SPACING)
    np.testing.assert_array_equal(cleaned.astype(bool), parts["left"] | parts["right"] | bridge)
    assert len(info["components_kept_ml"]) == 1


def test_inactive_and_bad_arguments():
    assert not VolumeCleanup().active and VolumeCleanup(fill_holes=True).active
    with pytest.raises(ValueError, match="at least 0"):
        VolumeCleanup(keep_largest=-1)
    with pytest.raises(ValueError, match=r"min_fraction in \[0, 1\]"):
        VolumeCleanup(min_fraction=1.5)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        VolumeCleanup(keep_largest=2)(np.zeros((4, 4)), SPACING)
