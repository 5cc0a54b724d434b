"""BinarizeMask, auto_mask_threshold and mask_value_report on {0,1}, {0,255}, JPEG, RGB and label-map masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.transforms import BinarizeMask, auto_mask_threshold, mask_value_report

_DISC = np.zeros((1, 16, 16), dtype=np.float32)
_DISC[0, 4:12, 5:11] = 1.0

TEST_CASES_THRESHOLD = [
    # (input, expected threshold)
    (np.zeros((1, 4, 4)), 0.5),
    (_DISC, 0.5),
    (_DISC * 2, 127.5),
    (_DISC * 255, 127.5),
    (_DISC * 256, 128.0),
    (_DISC * 65535, 32767.5),
    (np.zeros((1, 0, 0)), 0.5),
]


@pytest.mark.parametrize("mask, expected", TEST_CASES_THRESHOLD)
def test_auto_mask_threshold(mask, expected):
    assert auto_mask_threshold(mask) == expected


def _rgb(channel_values: tuple[float, float, float]) -> np.ndarray:
    return np.concatenate([_DISC * v for v in channel_values]).astype(np.float32)


TEST_CASES_BINARIZE = [
    # (kwargs, input, expected)
    ({}, _DISC, _DISC),
    ({}, _DISC * 255, _DISC),
    ({}, (_DISC * 255).astype(np.uint8), _DISC),
    ({}, _DISC.astype(bool), _DISC),
    ({}, _DISC * 65535, _DISC),
    ({}, _DISC * 1000, _DISC),
    ({}, np.zeros((1, 16, 16), dtype=np.float32), np.zeros((1, 16, 16), dtype=np.float32)),
    ({}, np.zeros((3, 16, 16), dtype=np.float32), np.zeros((1, 16, 16), dtype=np.float32)),
    ({}, _rgb((255, 255, 255)), _DISC),
    ({}, _rgb((255, 0, 0)), _DISC),  # a red mask on black counts
    ({}, np.concatenate([_DISC * 255, np.full((1, 16, 16), 255.0)]), np.ones((1, 16, 16))),  # RGBA: max incl. alpha
    ({}, _DISC * 200 + 10, _DISC),  # noisy levels 10 / 210
    ({"threshold": 0.0}, _DISC * 2, _DISC),  # label index 2 needs an explicit threshold
    ({"threshold": 0.5}, _DISC * 0.8, _DISC),
    ({"threshold": 100.0}, _DISC * 90, np.zeros((1, 16, 16))),
]


@pytest.mark.parametrize("kwargs, mask, expected", TEST_CASES_BINARIZE)
def test_binarize_mask_values(kwargs, mask, expected):
    out = BinarizeMask(**kwargs)(mask)
    assert isinstance(out, np.ndarray)
    assert out.shape == (1, *mask.shape[1:])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("quality", [50, 75, 90, 95])
@pytest.mark.parametrize("rgb", [False, True])
def test_binarize_jpeg_mask(binary_mask, jpeg_roundtrip, quality, rgb):
    noisy = jpeg_roundtrip(binary_mask, quality=quality, rgb=rgb)
    assert noisy.shape[0] == (3 if rgb else 1)
    assert len(np.unique(noisy)) > 2  # the codec really added noise
    out = BinarizeMask()(noisy)
    assert out.shape == (1, *binary_mask.shape)
    np.testing.assert_array_equal(out[0], binary_mask > 0)


def test_binarize_jpeg_background_noise_stays_background(binary_mask, jpeg_roundtrip):
    noisy = jpeg_roundtrip(binary_mask, quality=50)
    background = noisy[0][binary_mask == 0]
    assert 0 < background.max() < 127.5  # noise exists but stays below the threshold
    assert not BinarizeMask()(noisy)[0][binary_mask == 0].any()


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -float("inf")])
def test_binarize_bad_threshold(threshold):
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        BinarizeMask(threshold)


def test_binarize_needs_channel_dim():
    with pytest.raises(ValueError, match="channel-first"):
        BinarizeMask()(torch.zeros(4))


# ---- mask_value_report -------------------------------------------------------------------------------------------

_LABELS = np.zeros((1, 32, 32), dtype=np.float32)
_LABELS[0, 2:14, 2:14] = 1.0
_LABELS[0, 18:30, 18:30] = 2.0
_COLOURS = np.zeros((3, 32, 32), dtype=np.float32)
_COLOURS[0, 2:14, 2:14] = 255.0  # red class
_COLOURS[1, 18:30, 18:30] = 255.0  # green class
_CONTOUR = np.zeros((1, 32, 32), dtype=np.float32)
_CONTOUR[0, 8:24, 8:24] = 255.0
_CONTOUR[0, 8, 8:24] = 128.0  # a one-pixel line of a third value: thinner than the 5 x 5 square
_NAN = _DISC.copy()
_NAN[0, 0, 0] = np.nan

TEST_CASES_REPORT = [
    # (kwargs, input, expected substring of the report, or None for a binary mask)
    ({}, _DISC, None),
    ({}, _DISC * 255, None),
    ({}, _DISC[0] * 255, None),  # (H, W) is accepted
    ({}, np.zeros((1, 16, 16)), None),
    ({}, np.full((1, 16, 16), 255.0), None),
    ({}, _rgb((255, 0, 0)), None),
    ({}, _rgb((255, 255, 255)), None),
    ({}, _CONTOUR, None),
    ({}, _LABELS, "leaves no foreground"),
    ({}, _DISC * 2, "label indices"),
    ({"threshold": 0.5}, _LABELS, "intermediate values"),
    ({}, _LABELS * 100, "intermediate values"),
    ({}, _COLOURS, "2 foreground colours"),
    ({"threshold": 300.0}, _DISC * 255, "threshold 300 leaves no foreground"),
    ({"threshold": -1.0}, _DISC * 255, "leaves no background"),
    ({}, _NAN, "NaN"),
]


@pytest.mark.parametrize("kwargs, mask, expected", TEST_CASES_REPORT)
def test_mask_value_report(kwargs, mask, expected):
    report = mask_value_report(mask, **kwargs)
    if expected is None:
        assert report is None
    else:
        assert report is not None and expected in report


@pytest.mark.parametrize("quality", [20, 30, 50, 75, 95])
@pytest.mark.parametrize("rgb", [False, True])
def test_mask_value_report_accepts_jpeg_noise(binary_mask, jpeg_roundtrip, quality, rgb):
    assert mask_value_report(jpeg_roundtrip(binary_mask, quality=quality, rgb=rgb)) is None


def test_mask_value_report_flags_jpeg_label_map(jpeg_roundtrip):
    labels = (_LABELS[0] * 100).astype(np.uint8)  # levels 0, 100, 200 through the codec
    assert "intermediate values" in mask_value_report(jpeg_roundtrip(labels, quality=90))


@pytest.mark.parametrize(
    "kwargs, mask",
    [
        ({"tolerance": 0.5}, _DISC),
        ({"tolerance": -0.1}, _DISC),
        ({"radius": -1}, _DISC),
        ({}, np.zeros((1, 1, 4, 4))),
        ({}, np.zeros(4)),
    ],
)
def test_mask_value_report_bad_arguments(kwargs, mask):
    with pytest.raises(ValueError):
        mask_value_report(mask, **kwargs)
