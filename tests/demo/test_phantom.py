"""The chest phantom shared by both demos: one patient across levels, and the reconstruction kernels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipeline.demo.phantom import ChestAnatomy, scan, scan_circle


@pytest.fixture(scope="module")
def patient() -> ChestAnatomy:
    return ChestAnatomy.draw(np.random.default_rng(11))


@pytest.mark.parametrize(
    ("level", "has_lungs"),
    [(-0.2, False), (-0.13, False), (0.0, True), (0.5, True), (1.0, True), (1.13, False), (1.3, False)],
)
def test_lungs_end_beyond_apex_and_base(patient, level, has_lungs):
    hu, mask = patient.section(level, 64, np.random.default_rng(0))
    assert hu.shape == mask.shape == (64, 64) and mask.dtype == bool
    assert mask.any() == has_lungs
    assert hu[32, 32] > -500  # the mediastinum, at every level


def test_the_same_patient_at_every_level(patient):
    """Slice-to-slice randomness changes details only: two cuts of one level agree, two patients do not."""
    a = patient.section(0.5, 96, np.random.default_rng(1))[1]
    b = patient.section(0.5, 96, np.random.default_rng(2))[1]
    other = ChestAnatomy.draw(np.random.default_rng(12)).section(0.5, 96, np.random.default_rng(1))[1]
    assert (a & b).sum() / (a | b).sum() > 0.75
    assert (a & other).sum() / (a | other).sum() < (a & b).sum() / (a | b).sum()


def test_draw_is_deterministic():
    assert ChestAnatomy.draw(np.random.default_rng(3)) == ChestAnatomy.draw(np.random.default_rng(3))
    assert ChestAnatomy.draw(np.random.default_rng(3)) != ChestAnatomy.draw(np.random.default_rng(4))


def _air_noise(image: np.ndarray, clean: np.ndarray) -> float:
    """Standard deviation in the air around the body, inside the scan circle and away from edges."""
    flat = ndimage.binary_erosion(scan_circle(clean.shape[0]) & (clean == -1000.0), iterations=3)
    return float(image[flat].std())


@pytest.mark.parametrize("size", [128, 256])
def test_kernels_from_smooth_to_sharp(patient, size):
    """Sharper kernels are noisier: a real B70f / B40f pair (../shared/data/dicom) differs about 3x in air."""
    clean, _ = patient.section(0.5, size, np.random.default_rng(0))
    noise = []
    for sharpness in (0.0, 0.5, 1.0):
        image = scan(clean, np.random.default_rng(5), sharpness=sharpness)
        assert image.shape == clean.shape and np.isfinite(image).all()
        noise.append(_air_noise(image, clean))
    assert noise[0] < noise[1] < noise[2]
    assert 2.0 < noise[2] / noise[0] < 8.0, noise


def test_gain_and_offset_keep_soft_tissue(patient):
    clean, _ = patient.section(0.5, 64, np.random.default_rng(0))
    plain = scan(clean, np.random.default_rng(5), sharpness=0.5)
    calibrated = scan(clean, np.random.default_rng(5), sharpness=0.5, gain=0.9, offset=-10.0)
    np.testing.assert_allclose(calibrated, 0.9 * (plain - 40.0) + 40.0 - 10.0)
