"""Weights and model cards written before models had structures load, and give the masks they gave then."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import Segmenter

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "binary_model_964005e"
SMALL_UNET = {"network_def#channels": [4, 8, 16, 32, 64]}  # the override it was trained with (see its README)


@pytest.fixture(scope="module")
def model() -> Segmenter:
    # the expected masks were recorded in float32, before bfloat16 became the default on CPUs that run it natively
    return Segmenter(FIXTURE / "model.pt", device="cpu", amp=False, **SMALL_UNET)


def test_the_card_has_no_structures_and_reads_as_one():
    card = json.loads((FIXTURE / "model.json").read_text())
    assert "structures" not in card["settings"] and card["settings"]["out_channels"] == 1


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURE / "images").iterdir()))
def test_images_give_the_same_masks(model, name):
    expected = np.load(FIXTURE / "expected.npz")[f"image_{name}"]
    mask = model.predict(FIXTURE / "images" / name)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    np.testing.assert_array_equal(mask, expected)


def test_a_series_gives_the_same_mask_and_volume(model):
    expected = json.loads((FIXTURE / "expected_report.json").read_text())
    result = model.predict_series(FIXTURE / "series")
    np.testing.assert_array_equal(result.mask, np.load(FIXTURE / "expected.npz")["series"])
    assert result.report["segmented_volume_ml"] == pytest.approx(expected["segmented_volume_ml"], rel=1e-9)
    assert result.report["segment"] == expected["segment"] and "structures" not in result.report
