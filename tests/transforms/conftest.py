"""Synthetic data for the transform tests, built from seeded generators."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from monai.data import create_test_image_2d
from PIL import Image


def _jpeg_roundtrip(mask: np.ndarray, quality: int = 75, rgb: bool = False) -> np.ndarray:
    """Encode an (H, W) uint8 mask to JPEG with Pillow, decode it, return (C, H, W) float32 like the slice loader."""
    image = Image.fromarray(mask)
    if rgb:
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer), dtype=np.float32)
    return decoded[None] if decoded.ndim == 2 else np.ascontiguousarray(decoded.transpose(2, 0, 1))


@pytest.fixture
def jpeg_roundtrip() -> Callable[..., np.ndarray]:
    """``jpeg_roundtrip(mask_uint8_hw, quality=75, rgb=False) -> (C, H, W) float32``."""
    return _jpeg_roundtrip


@pytest.fixture
def binary_mask() -> np.ndarray:
    """(H, W) uint8 {0, 255} mask of a few discs of different sizes, seeded."""
    _, seg = create_test_image_2d(
        96, 96, num_objs=5, rad_max=20, rad_min=4, noise_max=0.0, random_state=np.random.RandomState(7)
    )
    return ((seg > 0) * 255).astype(np.uint8)


@pytest.fixture
def phantom() -> dict[str, np.ndarray]:
    """Asymmetric (1, 64, 48) image in HU-like values and its (1, 64, 48) {0, 1} mask, seeded.

    Background -1000 HU plus a left-right ramp, so every flip changes the image.
    """
    _, seg = create_test_image_2d(
        64, 48, num_objs=3, rad_max=12, rad_min=5, noise_max=0.0, random_state=np.random.RandomState(3)
    )
    label = (seg > 0).astype(np.float32)[None]
    ramp = np.linspace(0.0, 200.0, 48, dtype=np.float32)[None, None]
    image = (-1000.0 + 1000.0 * label + ramp * np.linspace(0.5, 1.0, 64, dtype=np.float32)[None, :, None]).astype(
        np.float32
    )
    return {"image": image, "label": label}
