"""split_lung_sides: right and left lung from one binary lung mask, on masks drawn with numpy."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.intake.dataset_recipes import split_lung_sides

SHAPE = (64, 96)  # the midline lies between columns 47 and 48
KINDS = {"two lungs apart", "touching lungs split", "one lung", "no lung"}


def _disc(centre: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _box(rows: slice, cols: slice) -> np.ndarray:
    box = np.zeros(SHAPE, bool)
    box[rows, cols] = True
    return box


RIGHT = _disc((32, 28), 12)  # on the image's left: the patient's right lung
LEFT = _disc((32, 68), 12)
TOUCHING = _disc((32, 36), 13) | _disc((32, 60), 13)  # one piece, narrow where the discs meet at the midline
SPECK = _box(slice(10, 12), slice(47, 49))  # 4 px, under 2 % of a lung
EXTRA = _disc((52, 20), 4)  # a second piece on the image's left, large enough to keep
OVER_MIDLINE = _disc((32, 58), 14)  # one lung whose edge reaches over the midline
AIR = _box(slice(0, 3), slice(4, 92))  # air around the patient, outside the body drawn by _ct


def _ct(mask: np.ndarray) -> np.ndarray:
    """A CT slice in HU: air around an elliptic body at 40 HU, the mask drawn in it as lung at -850 HU."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    image = np.where(((yy - 32) / 28) ** 2 + ((xx - 48) / 44) ** 2 <= 1, 40.0, -1000.0)
    return np.where(mask & (image > 0), -850.0, image).astype(np.float32)


# name, mask, with a CT image, expected counts, (row, column) -> expected value, whether every mask pixel is labelled
CASES = [
    ("two lungs", RIGHT | LEFT, False, {"two lungs apart": 1}, {(32, 28): 1, (32, 68): 2, (32, 48): 0}, True),
    ("touching lungs", TOUCHING, False, {"touching lungs split": 1}, {(32, 36): 1, (32, 60): 2, (32, 30): 1}, True),
    (
        "a speck",
        RIGHT | LEFT | SPECK,
        False,
        {"two lungs apart": 1, "specks dropped": 1},
        {(10, 47): 0, (32, 28): 1, (32, 68): 2},
        False,
    ),
    ("one lung, image right", LEFT, False, {"one lung": 1}, {(32, 68): 2, (32, 28): 0}, True),
    ("one lung, image left", RIGHT, False, {"one lung": 1}, {(32, 28): 1, (32, 68): 0}, True),
    ("one lung over the midline", OVER_MIDLINE, False, {"one lung": 1}, {(32, 46): 2, (32, 58): 2}, True),
    (
        "air outside the body",
        RIGHT | LEFT | AIR,
        True,
        {"two lungs apart": 1, "air outside the body dropped": 1},
        {(1, 48): 0, (1, 10): 0, (32, 28): 1, (32, 68): 2},
        False,
    ),
    ("lungs in a CT slice", RIGHT | LEFT, True, {"two lungs apart": 1}, {(32, 28): 1, (32, 68): 2}, True),
    ("a lung in two pieces", RIGHT | LEFT | EXTRA, False, {"two lungs apart": 1}, {(52, 20): 1, (32, 68): 2}, True),
    ("an empty mask", np.zeros(SHAPE, bool), False, {"no lung": 1}, {(32, 28): 0}, True),
]


@pytest.mark.parametrize("name, mask, with_image, counts, probes, whole", CASES, ids=[c[0] for c in CASES])
def test_sides(name, mask, with_image, counts, probes, whole):
    made = split_lung_sides(mask.astype(np.uint8), _ct(mask) if with_image else None)
    assert made.array.dtype == np.uint8 and made.array.shape == SHAPE
    assert dict(made.counts) == counts and len(KINDS & set(made.counts)) == 1
    assert {point: int(made.array[point]) for point in probes} == probes
    assert set(np.unique(made.array)) <= {0, 1, 2}
    assert not (made.array > 0)[~mask].any()  # nothing outside the source mask
    if whole:
        assert ((made.array > 0) == mask).all()
    # every decision that is not plain is said, and only those
    assert bool(made.remarks) == (name not in ("two lungs", "lungs in a CT slice"))


def test_touching_lungs_are_cut_at_their_narrowest_column_near_the_midline():
    made = split_lung_sides(TOUCHING)
    (remark,) = made.remarks
    cut = int(remark.split("cut at column ")[1].split(",")[0])
    column_counts = TOUCHING.sum(axis=0)
    assert abs(cut - 47.5) <= 1 and column_counts[cut] == column_counts[40:56].min()
    assert (made.array[:, :cut][TOUCHING[:, :cut]] == 1).all() and (made.array[:, cut:][TOUCHING[:, cut:]] == 2).all()


def test_air_outside_the_body_is_only_recognised_with_the_image():
    """Without the CT slice there is no body to compare with: the band of air is kept (and, spanning the midline, cut
    in two), which is why the recipe passes the image."""
    made = split_lung_sides(RIGHT | LEFT | AIR)
    assert made.array[1, 10] == 1 and made.array[1, 90] == 2 and "air outside the body dropped" not in made.counts
    # an image that is not in HU (nothing below -500) skips the body test rather than dropping everything
    made = split_lung_sides(RIGHT | LEFT | AIR, np.full(SHAPE, 100.0))
    assert made.array[1, 10] == 1


@pytest.mark.parametrize(
    "mask, image, match",
    [
        (np.zeros((1, *SHAPE)), None, r"mask must be \(H, W\), got shape \(1, 64, 96\)"),
        (np.zeros(SHAPE), np.zeros((32, 32)), r"image is \(32, 32\) but the mask is \(64, 96\)"),
    ],
)
def test_bad_arguments(mask, image, match):
    with pytest.raises(ValueError, match=match):
        split_lung_sides(mask, image)
