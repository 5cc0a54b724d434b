"""The chest phantom shared by both demos: one patient across levels, its label map, and the reconstruction kernels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipeline.demo.phantom import HEART, LABELS, LEFT_LUNG, RIGHT_LUNG, ChestAnatomy, scan, scan_circle


@pytest.fixture(scope="module")
def patient() -> ChestAnatomy:
    return ChestAnatomy.draw(np.random.default_rng(11))


def _lungs(labels: np.ndarray) -> np.ndarray:
    return np.isin(labels, (RIGHT_LUNG, LEFT_LUNG))


def _patients(count: int, size: int = 128) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """``(level, hu, labels)`` of one section of ``count`` random patients at random mid-chest levels."""
    out = []
    for seed in range(count):
        rng = np.random.default_rng([seed, 21])
        level = float(rng.uniform(0.4, 0.75))
        out.append((level, *ChestAnatomy.draw(rng, float(rng.uniform(0.9, 1.1))).section(level, size, rng)))
    return out


@pytest.mark.parametrize(
    ("level", "has_lungs", "has_heart"),
    [
        (-0.2, False, False),
        (-0.13, False, False),
        (0.0, True, False),
        (0.5, True, True),
        (1.0, True, False),  # the heart rests on the diaphragm, above the lung bases
        (1.13, False, False),
        (1.3, False, False),
    ],
)
def test_structures_end_beyond_apex_and_base(patient, level, has_lungs, has_heart):
    hu, labels = patient.section(level, 64, np.random.default_rng(0))
    assert hu.shape == labels.shape == (64, 64) and labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) <= set(LABELS)
    assert _lungs(labels).any() == has_lungs
    assert (labels == HEART).any() == has_heart
    assert hu[32, 32] > -500  # the mediastinum, at every level


def test_the_same_patient_at_every_level(patient):
    """Slice-to-slice randomness changes details only: two cuts of one level agree, two patients do not."""
    a = _lungs(patient.section(0.5, 96, np.random.default_rng(1))[1])
    b = _lungs(patient.section(0.5, 96, np.random.default_rng(2))[1])
    other = _lungs(ChestAnatomy.draw(np.random.default_rng(12)).section(0.5, 96, np.random.default_rng(1))[1])
    assert (a & b).sum() / (a | b).sum() > 0.75
    assert (a & other).sum() / (a | other).sum() < (a & b).sum() / (a | b).sum()


def test_label_map_sides_are_the_patients():
    """The patient's right lung lies on the image's left (radiological display), the heart towards the image's right;
    at mid-chest levels every structure is there, as one piece."""
    for level, hu, labels in _patients(8):
        columns = np.arange(labels.shape[1])
        centre = {value: columns[np.nonzero(labels == value)[1]].mean() for value in (RIGHT_LUNG, LEFT_LUNG, HEART)}
        assert centre[RIGHT_LUNG] < labels.shape[1] / 2 < centre[LEFT_LUNG], level
        assert centre[RIGHT_LUNG] < centre[HEART] < centre[LEFT_LUNG] and centre[HEART] > labels.shape[1] / 2, level
        for value in (RIGHT_LUNG, LEFT_LUNG, HEART):
            assert ndimage.label(labels == value)[1] == 1, (level, value)
        assert np.median(hu[labels == HEART]) > 0 > np.median(hu[_lungs(labels)])


def test_the_heart_border_is_visible():
    """A 2D model can see the heart: pericardial fat (or lung) surrounds it, also where it meets the great vessels,
    the liver or the chest wall, which have the heart's density."""
    for level, hu, labels in _patients(8, size=256):
        heart = labels == HEART
        ring = ndimage.binary_dilation(heart) & ~heart
        alike = np.abs(hu[ring] - np.median(hu[heart])) < 30
        assert alike.mean() < 0.1, (level, alike.mean())  # small bronchi and lung vessels may touch it


def test_the_heart_ends_above_the_lung_bases(patient):
    heart = [(patient.section(level, 64, np.random.default_rng(0))[1] == HEART).sum() for level in (0.1, 0.6, 1.0)]
    assert heart[0] == 0 and heart[1] > 0.05 * 64 * 64 and heart[2] == 0


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
