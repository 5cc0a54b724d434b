"""CTWindow, ScaleIntensityNonCT and ScaleIntensityForModality: values, dispatch and bad arguments."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from monai.transforms import ScaleIntensityRangePercentiles

from pipeline.transforms import (
    BONE_WINDOW,
    BRAIN_WINDOW,
    CT_MODALITIES,
    LUNG_WINDOW,
    MEDIASTINUM_WINDOW,
    NON_CT_MODALITIES,
    SOFT_TISSUE_WINDOW,
    CTWindow,
    ScaleIntensityForModality,
    ScaleIntensityNonCT,
)


def _row(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(1, 1, -1)


TEST_CASES_CT_WINDOW = [
    # (kwargs, input, expected)
    ({}, _row(-2000, -1000, -300, 400, 3000), _row(0.0, 0.0, 0.5, 1.0, 1.0)),
    ({"window": MEDIASTINUM_WINDOW}, _row(-1000, -160, 40, 240, 1000), _row(0.0, 0.0, 0.5, 1.0, 1.0)),
    ({"window": (0, 100), "b_min": -1.0, "b_max": 1.0}, _row(-50, 0, 25, 100, 150), _row(-1, -1, -0.5, 1, 1)),
    ({"clip": False}, _row(-1700, -300, 1100), _row(-0.5, 0.5, 1.5)),
]


@pytest.mark.parametrize("kwargs, img, expected", TEST_CASES_CT_WINDOW)
def test_ct_window_values(kwargs, img, expected):
    out = CTWindow(**kwargs)(img)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize(
    "window, level, width",
    [
        (LUNG_WINDOW, -300, 1400),
        (MEDIASTINUM_WINDOW, 40, 400),
        (SOFT_TISSUE_WINDOW, 50, 350),
        (BONE_WINDOW, 300, 1500),
        (BRAIN_WINDOW, 40, 80),
    ],
)
def test_window_constants_match_level_and_width(window, level, width):
    lower, upper = window
    assert (lower + upper) / 2 == level
    assert upper - lower == width


_RAMP = np.arange(1000, dtype=np.float32).reshape(1, 20, 50)
_RGB = np.stack([np.arange(16.0).reshape(4, 4), 2 * np.arange(16.0).reshape(4, 4), np.zeros((4, 4))]).astype(np.float32)
_SPARSE = np.zeros((1, 100, 100), dtype=np.float32)
_SPARSE[0, 0, :20] = 255.0  # 0.2 % bright pixels: the 0.5 and 99.5 percentiles are both 0

TEST_CASES_NON_CT = [
    # (kwargs, input, expected)
    ({"lower": 0, "upper": 100}, _RAMP, _RAMP / 999.0),
    ({"lower": 0, "upper": 100, "b_min": -1.0, "b_max": 1.0}, _RAMP, _RAMP / 999.0 * 2 - 1),
    # all channels together: G stays twice R, B stays 0
    ({"lower": 0, "upper": 100}, _RGB, _RGB / 30.0),
    ({}, np.full((3, 8, 8), 42.0, dtype=np.float32), np.zeros((3, 8, 8), dtype=np.float32)),
    ({"b_min": -1.0}, np.full((1, 8, 8), -7.0, dtype=np.float32), np.full((1, 8, 8), -1.0, dtype=np.float32)),
    ({}, _SPARSE, _SPARSE / 255.0),
]


@pytest.mark.parametrize("kwargs, img, expected", TEST_CASES_NON_CT)
def test_scale_intensity_non_ct_values(kwargs, img, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # constant images must not hit MONAI's divide-by-zero warning
        out = ScaleIntensityNonCT(**kwargs)(img)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_scale_intensity_non_ct_clips_outside_percentiles():
    out = ScaleIntensityNonCT(lower=1, upper=99)(_RAMP)
    lower, upper = np.percentile(_RAMP, [1, 99])
    np.testing.assert_allclose(out, np.clip((_RAMP - lower) / (upper - lower), 0, 1), atol=1e-6)
    assert out.min() == 0.0 and out.max() == 1.0


def test_scale_intensity_non_ct_fixes_monai_sparse_case():
    # why the class does not delegate to ScaleIntensityRangePercentiles: this image comes back unscaled from it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monai_out = ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True)(_SPARSE)
    assert float(monai_out.max()) == 255.0
    assert float(ScaleIntensityNonCT()(_SPARSE).max()) == 1.0


@pytest.mark.parametrize("modality", ["CT", "ct", " CT "])
def test_modality_ct_uses_window(modality):
    transform = ScaleIntensityForModality(modality, window=MEDIASTINUM_WINDOW)
    assert isinstance(transform.scaler, CTWindow)
    assert transform.modality == "CT"
    img = _row(-1000, 40, 1000)
    np.testing.assert_allclose(transform(img), CTWindow(MEDIASTINUM_WINDOW)(img))


@pytest.mark.parametrize("modality", ["MR", "XR", "ES", "SM", "OT", "xr", *NON_CT_MODALITIES])
def test_modality_non_ct_uses_percentiles(modality):
    transform = ScaleIntensityForModality(modality, lower=2.0, upper=98.0)
    assert isinstance(transform.scaler, ScaleIntensityNonCT)
    np.testing.assert_allclose(transform(_RAMP), ScaleIntensityNonCT(lower=2.0, upper=98.0)(_RAMP))


def test_modality_codes_are_disjoint():
    assert not set(CT_MODALITIES) & set(NON_CT_MODALITIES)


@pytest.mark.parametrize("modality", ["XY", "", "CTA", "X-ray", None, 1])
def test_unknown_modality_lists_accepted_codes(modality):
    with pytest.raises(ValueError, match=r"accepted DICOM modality codes: CT, MR, .*XR.*ES.*SM.*OT"):
        ScaleIntensityForModality(modality)
