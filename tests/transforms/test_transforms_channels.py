"""AdjustChannels: grayscale <-> RGB, RGBA, and the combinations that must raise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.transforms import AdjustChannels

_GRAY = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
# pure red, green, blue, white and black pixels in one row
_RGB = np.array(
    [[[1, 0, 0, 1, 0]], [[0, 1, 0, 1, 0]], [[0, 0, 1, 1, 0]]],
    dtype=np.float32,
)
_RGBA = np.concatenate([_RGB, np.full((1, 1, 5), 0.5, dtype=np.float32)])

TEST_CASES = [
    # (kwargs, input, expected)
    ({"num_channels": 3}, _GRAY, np.concatenate([_GRAY] * 3)),
    ({"num_channels": 1}, _RGB, np.array([[[0.299, 0.587, 0.114, 1.0, 0.0]]], dtype=np.float32)),
    ({"num_channels": 3}, _RGBA, _RGB),
    ({"num_channels": 1}, _RGBA, np.array([[[0.299, 0.587, 0.114, 1.0, 0.0]]], dtype=np.float32)),
    ({"num_channels": 1}, _GRAY, _GRAY),
    ({"num_channels": 3}, _RGB, _RGB),
    ({"num_channels": 1}, (255 * _RGB).astype(np.uint8), 255 * np.array([[[0.299, 0.587, 0.114, 1.0, 0.0]]])),
]


@pytest.mark.parametrize("kwargs, img, expected", TEST_CASES)
def test_adjust_channels_values(kwargs, img, expected):
    out = AdjustChannels(**kwargs)(img)
    assert isinstance(out, np.ndarray)
    assert out.shape == expected.shape
    assert np.issubdtype(out.dtype, np.floating) or out.dtype == img.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_adjust_channels_equal_count_is_unchanged():
    img = torch.rand(3, 4, 4)
    assert AdjustChannels(3)(img) is img


def test_adjust_channels_keeps_float_dtype():
    out = AdjustChannels(1)(torch.rand(3, 4, 4, dtype=torch.float64))
    assert out.dtype == torch.float64


@pytest.mark.parametrize("num_channels", [0, 2, 4, -1])
def test_adjust_channels_bad_num_channels(num_channels):
    with pytest.raises(ValueError, match="num_channels must be 1 or 3"):
        AdjustChannels(num_channels)


@pytest.mark.parametrize(
    "num_channels, shape",
    [(1, (2, 4, 4)), (3, (2, 4, 4)), (3, (5, 4, 4)), (1, (6, 4, 4))],
)
def test_adjust_channels_unsupported_input_names_shape(num_channels, shape):
    with pytest.raises(ValueError, match=rf"shape \({shape[0]}, 4, 4\)"):
        AdjustChannels(num_channels)(np.zeros(shape, dtype=np.float32))


def test_adjust_channels_needs_channel_dim():
    with pytest.raises(ValueError, match="channel-first"):
        AdjustChannels(3)(np.zeros(5, dtype=np.float32))
