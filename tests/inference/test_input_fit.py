"""Inputs compared with the model card's training fingerprint before the model runs, and results after it.

One table of inputs against one CT card (the fixture model's: Hounsfield units, one grey channel, 64 x 64) and one
colour card: each row says whether the input is refused (with the words the message must hold), or flagged, or
passes. Then the same through the real runner and the bundle command's exit status.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.inference import InputFit, InputFitError

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "binary_model_964005e"
CT = json.loads((FIXTURE / "model.json").read_text())["data"]  # values -2642 to 1064 HU, 64 x 64, one channel
COLOUR = {
    "channels": [3],
    "height": {"min": 300, "median": 500.0, "max": 1000},
    "width": {"min": 300, "median": 600.0, "max": 1200},
    "intensity": {"min": 0.0, "max": 255.0, "mean": 110.0, "std": 30.0, "whole_numbers": True},
    "pairs": 10,
    "foreground_range": [0.01, 0.4],
    "empty_masks": 0,
}


def _ct_slice(size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((1, size, size), -1000.0, np.float32)
    image[0, size // 8 : -size // 8, size // 8 : -size // 8] = 40.0
    return image + rng.normal(0, 20, image.shape).astype(np.float32)


def _eight_bit(image: np.ndarray) -> np.ndarray:
    """What an export of a CT slice to PNG holds: the lung window mapped to 0..255."""
    return np.clip((image + 1000) / 1400 * 255, 0, 255).round().astype(np.float32)


def _marked() -> np.ndarray:
    """A grey picture stored as RGB with a small red marker burnt in (0.4 % of the pixels), as X-ray exports have."""
    grey = np.repeat(_eight_bit(_ct_slice()), 3, axis=0)
    grey[0, 2:6, 2:6], grey[1:, 2:6, 2:6] = 255, 0
    return grey


def _colour(size: int = 400) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (3, size, size)).astype(np.float32)


CASES = [
    # name, card, modality, in_channels, image, outcome, words
    ("a CT slice in HU", CT, "CT", 1, _ct_slice(), "pass", []),
    ("an 8-bit export of a CT slice", CT, "CT", 1, _eight_bit(_ct_slice()), "refused",
     ["never go below 0 (an 8-bit export?)", "Hounsfield units", "--force_input true"]),
    ("a constant image", CT, "CT", 1, np.full((1, 64, 64), -1000.0, np.float32), "refused",
     ["every pixel is -1000 (a constant image)"]),
    ("a constant image, no card", {}, "CT", 1, np.zeros((1, 64, 64), np.float32), "refused", ["constant image"]),
    ("colour into a grey model", CT, "OT", 1, _colour(64), "refused", ["a colour image", "trained on grey"]),
    ("grey stored as RGB into a grey model", {**CT, "intensity": {"min": 0, "max": 255}}, "OT", 1,
     np.repeat(_eight_bit(_ct_slice()), 3, axis=0), "pass", []),
    ("far beyond the training values", CT, "CT", 1, _ct_slice() * 6, "flagged", ["reach far beyond the training"]),
    ("much larger than the training images", CT, "CT", 1, _ct_slice(size=640), "flagged", ["640 x 640 pixels"]),
    ("larger, within a resize's reach", CT, "CT", 1, _ct_slice(size=512), "pass", []),
    ("colour into a colour model", COLOUR, "ES", 3, _colour(), "pass", []),
    ("grey into a colour model", COLOUR, "ES", 3, np.repeat(_colour()[:1], 3, axis=0), "flagged",
     ["a grey image for a model trained on colour"]),
    ("a darker image, scaled per image anyway", COLOUR, "ES", 3, _colour() * 0.05, "pass", []),
    ("16-bit values for a model of 8-bit ones", COLOUR, "ES", 3, _colour() * 256, "pass", []),
    ("a grey image with a coloured marker", {**CT, "intensity": {"min": 0, "max": 255}}, "OT", 1, _marked(), "pass",
     []),
]  # fmt: skip


@pytest.mark.parametrize("name, card, modality, in_channels, image, outcome, words", CASES, ids=[c[0] for c in CASES])
def test_input_fit(name, card, modality, in_channels, image, outcome, words):
    fit = InputFit(card, modality=modality, in_channels=in_channels)
    if outcome == "refused":
        with pytest.raises(InputFitError) as refused:
            fit.check("case.png", image)
        message = str(refused.value)
        assert message.startswith("case.png: ") and all(w in message for w in words), message
        forced = InputFit(card, modality=modality, in_channels=in_channels, force=True).check("case.png", image)
        assert forced and forced[0].startswith("refused without --force_input: ")  # segmented, and flagged
        return
    flags = fit.check("case.png", image)
    if outcome == "pass":
        assert flags == [], flags
    else:
        assert flags and all(any(w in f for f in flags) for w in words), flags


def test_a_series_of_three_slices_is_not_read_as_colour():
    volume = np.concatenate([_ct_slice(seed=k) for k in range(3)])  # (3, H, W) slices, not channels
    assert InputFit(CT, modality="CT", in_channels=1).check("CT_s001", volume, volume=True) == []


@pytest.mark.parametrize(
    "card, shares, words",
    [
        (COLOUR, [0.1], []),
        (COLOUR, [0.0], ["no foreground, while every training mask had some"]),
        (COLOUR, [0.0, 0.0, 0.0], ["no foreground"]),
        (COLOUR, [0.0, 0.2, 0.0], []),
        (COLOUR, [0.95], ["foreground covers 95% of a slice, training masks at most 40%"]),
        ({**COLOUR, "empty_masks": 3}, [0.0], []),  # training had empty masks: an empty result is plausible
        (CT, [0.0], []),  # a card written before the range was recorded: nothing to compare with
    ],
)
def test_results_against_the_training_masks(card, shares, words):
    flags = InputFit(card, modality="ES", in_channels=3).check_result(shares)
    assert len(flags) == len(words) and all(w in f for w, f in zip(words, flags, strict=True)), flags
