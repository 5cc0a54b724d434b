"""Amounts of training in epochs, samples or optimizer steps, and the validation rounds that cover them."""

from __future__ import annotations

import pytest

from pipeline.training import Amount, validation_rounds


@pytest.mark.parametrize(
    "text, value, unit",
    [
        ("3000 samples", 3000.0, "samples"),
        ("1 sample", 1.0, "samples"),
        ("400 steps", 400.0, "steps"),
        ("15 epochs", 15.0, "epochs"),
        (" 2.5 epoch ", 2.5, "epochs"),
        ("15", 15.0, "epochs"),
        (15, 15.0, "epochs"),
        (0, 0.0, "epochs"),
    ],
)
def test_parse(text, value, unit):
    assert Amount.parse(text) == Amount(value, unit)


@pytest.mark.parametrize("text", ["", "ten epochs", "5 minutes", "-3 steps", True])
def test_parse_refuses(text):
    with pytest.raises(ValueError, match=r"amount of training|unit"):
        Amount.parse(text)


# 25 samples per epoch in batches of 8: 4 steps per epoch, the last one short
@pytest.mark.parametrize(
    "text, epochs, steps",
    [("2 epochs", 2.0, 8), ("50 samples", 2.0, 7), ("8 steps", 2.0, 8), ("10 samples", 0.4, 2), ("1 steps", 0.25, 1)],
)
def test_conversions(text, epochs, steps):
    amount = Amount.parse(text)
    assert amount.epochs(25, 8) == pytest.approx(epochs) and amount.steps(25, 8) == steps


@pytest.mark.parametrize(
    "amount, samples_per_epoch, val_interval, rounds",
    [
        ("3000 samples", 24, 1, 125),  # a small set: many short epochs
        ("3000 samples", 20000, 1, 1),  # a large one: one epoch already holds more
        ("15 epochs", 187, 1, 15),  # the seeds' recipe, whatever the data
        ("15 epochs", 187, 2, 8),
        ("0 steps", 10, 1, 1),
    ],
)
def test_validation_rounds(amount, samples_per_epoch, val_interval, rounds):
    assert validation_rounds(amount, samples_per_epoch, 8, val_interval) == rounds
