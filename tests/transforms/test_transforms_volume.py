"""VolumeCleanup: 3D largest components, small islands and per-slice holes on a synthetic chest mask."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipeline.transforms import VolumeCleanup, fill_slice_holes

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


@pytest.mark.parametrize(
    "shape, density, dilate",
    [
        ((1, 1, 1), 0.5, 0),
        ((1, 3, 3), 0.8, 0),
        ((3, 1, 17), 0.5, 0),
        ((2, 16, 16), 0.3, 1),
        ((4, 40, 33), 0.2, 2),
        ((5, 64, 64), 0.5, 0),
        ((3, 64, 64), 0.05, 3),
        ((2, 20, 20), 1.0, 0),
        ((2, 20, 20), 0.0, 0),
    ],
)
def test_fill_slice_holes_equals_scipy_per_slice(shape: tuple[int, int, int], density: float, dilate: int) -> None:
    rng = np.random.default_rng(sum(shape) + dilate)
    for _ in range(5):
        mask = rng.random(shape) < density
        if dilate:
            mask = ndimage.binary_dilation(mask, iterations=dilate)
        expected = np.stack([ndimage.binary_fill_holes(s) for s in mask])
        np.testing.assert_array_equal(fill_slice_holes(mask.astype(np.uint8)), expected)


def test_fill_slice_holes_keeps_slices_apart_and_refuses_2d() -> None:
    ring = np.zeros((2, 7, 7), bool)
    ring[0, 1:6, 1:6] = True
    ring[0, 2:5, 2:5] = False  # a hole on slice 0; slice 1 is empty background under it
    filled = fill_slice_holes(ring)
    assert filled[0, 3, 3] and not filled[1].any()
    assert fill_slice_holes(np.zeros((0, 4, 4))).shape == (0, 4, 4)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        fill_slice_holes(np.zeros((4, 4)))


def _reference_cleanup(mask: np.ndarray, cleanup: VolumeCleanup, voxel_ml: float) -> np.ndarray:
    """The clean-up written plainly over the whole stack: scipy labels, then scipy's hole filling slice by slice."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_ml
    order = np.argsort(sizes)[::-1]
    keep = order[: cleanup.keep_largest] if cleanup.keep_largest else order
    smallest = max(cleanup.min_volume_ml, cleanup.min_fraction * (float(sizes.max()) if count else 0.0))
    cleaned = np.isin(labels, [int(i) + 1 for i in keep if sizes[i] >= smallest])
    if cleanup.fill_holes:
        cleaned = np.stack([ndimage.binary_fill_holes(s) for s in cleaned])
    return cleaned.astype(np.uint8)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "cleanup",
    [VolumeCleanup(keep_largest=2, min_volume_ml=0.05, min_fraction=0.1, fill_holes=True), VolumeCleanup(1)],
)
def test_cleanup_in_the_foreground_box_equals_the_whole_stack(seed: int, cleanup: VolumeCleanup) -> None:
    """Blobs anywhere, some touching the stack's edges, on stacks with empty slices and empty margins."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((8, 48, 40), bool)
    mask[1:7] = ndimage.binary_dilation(rng.random((6, 48, 40)) < 0.03, iterations=int(rng.integers(1, 4)))
    mask[:, : int(rng.integers(0, 6))] = False  # an empty band at the top, sometimes none
    cleaned, _ = cleanup(mask, SPACING)
    np.testing.assert_array_equal(cleaned, _reference_cleanup(mask, cleanup, float(np.prod(SPACING)) / 1000.0))


def test_more_components_and_holes_than_uint16_labels_hold() -> None:
    """Labels fall back from uint16 to int32 past 65,535 components: 90,000 specks, and a grid of 90,000 holes."""
    specks = np.zeros((1, 600, 600), bool)
    specks[0, ::2, ::2] = True
    specks[0, 100:110, 100:110] = True  # the largest component: this square and the specks it touches
    cleaned, info = VolumeCleanup(keep_largest=1)(specks, (1.0, 1.0, 1.0))
    assert info["components_found"] == 90_000 - 36 + 1 and cleaned.sum() == 100 + 11
    np.testing.assert_array_equal(cleaned[0] > 0, _reference_cleanup(specks, VolumeCleanup(keep_largest=1), 1e-3)[0])
    grid = np.ones((1, 602, 602), bool)
    grid[0, 1:-1:2, 1:-1:2] = False  # 90,000 one-pixel holes
    assert fill_slice_holes(grid).all()


def test_cleanup_of_an_empty_stack() -> None:
    cleaned, info = VolumeCleanup(keep_largest=2, fill_holes=True)(np.zeros((3, 16, 16)), SPACING)
    assert cleaned.shape == (3, 16, 16) and not cleaned.any() and info["components_found"] == 0


def test_a_label_map_is_cleaned_structure_by_structure():
    """Each structure keeps its own largest component; a hole is filled only where no other structure is."""
    mask = np.zeros((3, 12, 12), np.uint8)
    mask[:, 1:5, 1:5] = 1  # structure 1, large
    mask[1, 9:10, 9:10] = 1  # structure 1, a speck far away: removed
    mask[:, 6:11, 1:6] = 2  # structure 2: a ring...
    mask[:, 8, 3] = 3  # ... around structure 3, which fills part of its hole
    mask[:, 7:10, 2:5][mask[:, 7:10, 2:5] == 2] = 0
    mask[:, 8, 3] = 3
    cleaned, info = VolumeCleanup(keep_largest=1, fill_holes=True)(mask, (10.0, 10.0, 10.0))  # 1 mL voxels
    assert cleaned.dtype == np.uint8 and set(np.unique(cleaned)) == {0, 1, 2, 3}
    assert cleaned[1, 9, 9] == 0 and info["per_structure"]["1"]["removed_ml"] == pytest.approx(1.0)
    assert (cleaned[:, 8, 3] == 3).all()  # structure 3 stays inside structure 2's ring
    assert (cleaned[:, 7:10, 2:5][cleaned[:, 7:10, 2:5] != 3] == 2).all()  # the rest of the hole: structure 2
    assert set(info["per_structure"]) == {"1", "2", "3"} and info["components_found"] == 4


def test_one_structure_of_another_value_keeps_its_value():
    mask = np.zeros((2, 6, 6), np.uint8)
    mask[:, 1:4, 1:4] = 5
    cleaned, info = VolumeCleanup(keep_largest=1)(mask, (1.0, 1.0, 1.0))
    assert set(np.unique(cleaned)) == {0, 5} and "per_structure" not in info
