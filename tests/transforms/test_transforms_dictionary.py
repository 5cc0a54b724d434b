"""Dictionary wrappers equal their array transforms; the bundles' augmentation moves image and mask together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose
from monai.utils import set_determinism

from pipeline.transforms import (
    AdjustChannels,
    AdjustChannelsd,
    BinarizeMask,
    BinarizeMaskd,
    CTWindow,
    CTWindowd,
    ScaleIntensityForModality,
    ScaleIntensityForModalityd,
    ScaleIntensityNonCT,
    ScaleIntensityNonCTd,
)

COMMON_CONFIG = Path(__file__).resolve().parents[2] / "bundles" / "common" / "train.json"

_HU = torch.linspace(-1200, 600, 2 * 12 * 16).reshape(2, 12, 16)[:1]
_RGB = torch.rand(3, 12, 16, generator=torch.Generator().manual_seed(0)) * 255
_MASK = (torch.rand(1, 12, 16, generator=torch.Generator().manual_seed(1)) > 0.5).float() * 255

PAIRS = [
    (CTWindow(window=(-1000, 400)), CTWindowd(keys="x", window=(-1000, 400)), _HU),
    (ScaleIntensityNonCT(), ScaleIntensityNonCTd(keys="x"), _RGB),
    (ScaleIntensityForModality("CT"), ScaleIntensityForModalityd(keys="x", modality="CT"), _HU),
    (ScaleIntensityForModality("ES"), ScaleIntensityForModalityd(keys="x", modality="ES"), _RGB),
    (AdjustChannels(1), AdjustChannelsd(keys="x", num_channels=1), _RGB),
    (AdjustChannels(3), AdjustChannelsd(keys="x", num_channels=3), _HU),
    (BinarizeMask(), BinarizeMaskd(keys="x"), _MASK),
]


@pytest.mark.parametrize("array_transform, dict_transform, data", PAIRS, ids=lambda v: type(v).__name__)
def test_dictionary_equals_array(array_transform, dict_transform, data):
    out = dict_transform({"x": data.clone(), "other": 7})
    torch.testing.assert_close(torch.as_tensor(out["x"]), torch.as_tensor(array_transform(data.clone())))
    assert out["other"] == 7


def _bundle_augmentation() -> Compose:
    """The training resize + augmentation exactly as the bundles configure it, with every random transform on."""
    parser = ConfigParser()
    parser.read_config(COMMON_CONFIG)
    parser["spatial_size"] = [40, 48]
    parser["sides"] = False  # the left-right flip too (structures with sides leave it out)
    for group in ("augmentation", "extra_augmentation"):
        for i, transform in enumerate(parser["train"][group]):
            if "prob" in transform:
                parser[f"train#{group}#{i}#prob"] = 1.0
    transforms = [parser.get_parsed_content(f"train#{part}") for part in ("augmentation", "extra_augmentation")]
    return Compose([parser.get_parsed_content("train#resize"), *transforms[0], *transforms[1]])


def test_augmentation_moves_image_and_mask_together():
    """An image that is its mask plus a ramp must still line up with the mask after every random transform."""
    augment = _bundle_augmentation()
    mask = torch.zeros(1, 30, 36)
    mask[:, 4:14, 3:12] = 1  # off-centre so that any flip, rotation or zoom moves it
    ramp = torch.linspace(0, 0.1, 36).expand(1, 30, 36)
    set_determinism(seed=0)
    try:
        for _ in range(8):
            out = augment({"image": mask * 2 + ramp, "label": mask.clone()})
            image, label = np.asarray(out["image"])[0], np.asarray(out["label"])[0]
            # masks are soft targets after the anti-aliased resize: fractions only along the boundary
            assert label.min() >= 0.0 and label.max() <= 1.0 and ((label > 0.05) & (label < 0.95)).mean() < 0.25
            inside, outside = image[label > 0.95], image[label < 0.05]
            # bilinear interpolation blurs a one-pixel rim; away from it the two must agree
            assert np.median(inside) > np.median(outside) + 0.5
            # blur, noise and low resolution soften the image's edge; a mask left behind by a flip or rotation
            # (8 % of the area, moved) would agree on at most 0.84
            agreement = ((image > image.mean()) == (label > 0.5)).mean()
            assert agreement > 0.9
    finally:
        set_determinism(seed=None)
