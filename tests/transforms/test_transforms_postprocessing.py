"""mask_cleanup: largest connected components and hole filling on binary (1, H, W) masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, FillHolesd, KeepLargestConnectedComponentd

from pipeline.transforms import mask_cleanup


def _blobs() -> np.ndarray:
    """Left lung 10x6 with a 2x2 hole, right lung 8x5, a 2x2 speck of table: three components."""
    mask = np.zeros((1, 20, 24), dtype=np.float32)
    mask[0, 2:12, 2:8] = 1
    mask[0, 5:7, 4:6] = 0  # hole
    mask[0, 2:10, 12:17] = 1
    mask[0, 16:18, 20:22] = 1  # speck
    return mask


def _expected(keep_largest: int, fill_holes: bool) -> np.ndarray:
    mask = _blobs()
    if keep_largest in (1, 2):
        mask[0, 16:18, 20:22] = 0
    if keep_largest == 1:
        mask[0, 2:10, 12:17] = 0
    if fill_holes:
        mask[0, 5:7, 4:6] = 1
    return mask


@pytest.mark.parametrize(
    "keep_largest, fill_holes, types",
    [
        (0, False, []),
        (2, False, [KeepLargestConnectedComponentd]),
        (1, False, [KeepLargestConnectedComponentd]),
        (0, True, [FillHolesd]),
        (2, True, [KeepLargestConnectedComponentd, FillHolesd]),
        (3, True, [KeepLargestConnectedComponentd, FillHolesd]),
    ],
)
def test_mask_cleanup(keep_largest, fill_holes, types):
    steps = mask_cleanup("pred", keep_largest=keep_largest, fill_holes=fill_holes)
    assert [type(s) for s in steps] == types
    out = Compose(steps)({"pred": torch.from_numpy(_blobs())})["pred"]
    np.testing.assert_array_equal(np.asarray(out), _expected(keep_largest, fill_holes))


def test_negative_count_is_refused():
    with pytest.raises(ValueError, match="keep_largest"):
        mask_cleanup(keep_largest=-1)


@pytest.mark.parametrize("config", ["bundles/unet/inference.json", "bundles/unet/evaluate.json"])
@pytest.mark.parametrize(
    "labels, steps",
    [
        ({"1": "lung"}, ["KeepLargestConnectedComponentd", "FillHolesd"]),
        (None, ["AsDiscreted", "KeepLargestConnectedComponentd", "FillHolesd", "AsDiscreted"]),  # the demo's three
    ],
    ids=["one structure", "several"],
)
def test_bundles_switch_cleanup_from_the_command_line(config, labels, steps, monkeypatch):
    monkeypatch.chdir(__file__.rsplit("/tests/", 1)[0])
    parser = ConfigParser()
    parser.read_config(config)
    parser.update({"labels": labels})
    parser.parse()
    assert [type(t).__name__ for t in parser.get_parsed_content("mask_cleanup")] == []
    parser.update({"keep_largest": 2, "fill_holes": True})
    parser.parse()
    names = [type(t).__name__ for t in parser.get_parsed_content("mask_cleanup")]
    assert names == steps
