"""Amounts of training counted in epochs, samples or optimizer steps.

An epoch is one pass over the training data, so "15 epochs" is 360 images on a 24-image set and 300,000 on a
20,000-image set. Decisions that should follow how much the model has learned (warm-up, early-stopping patience,
plateau patience) are therefore given in samples seen or optimizer steps by default, and converted here to the unit
each mechanism counts in: validation rounds for early stopping and plateaus, optimizer steps for warm-up.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["UNITS", "Amount", "validation_rounds"]

UNITS = ("epochs", "samples", "steps")
_TEXT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(epochs?|samples?|steps?)?\s*$")


@dataclass(frozen=True)
class Amount:
    """An amount of training, such as ``15 epochs``, ``3000 samples`` or ``400 steps``.

    Attributes:
        value: the count, at least 0.
        unit: ``"epochs"``, ``"samples"`` or ``"steps"`` (optimizer steps).
    """

    value: float
    unit: str

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}.")
        if not self.value >= 0:
            raise ValueError(f"an amount of training must be at least 0, got {self.value!r}.")

    @classmethod
    def parse(cls, text: str | float | Amount) -> Amount:
        """Read ``"3000 samples"``, ``"400 steps"``, ``"15 epochs"`` or a bare number (epochs, as before units).

        Raises:
            ValueError: for anything else, with the text and the accepted forms.
        """
        if isinstance(text, Amount):
            return text
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            return cls(float(text), "epochs")
        match = _TEXT.match(str(text))
        if match is None:
            raise ValueError(
                f"cannot read {text!r} as an amount of training: write a number and a unit, such as "
                "'3000 samples', '400 steps' or '15 epochs' (a bare number means epochs)."
            )
        unit = (match.group(2) or "epochs").rstrip("s") + "s"
        return cls(float(match.group(1)), unit)

    def epochs(self, samples_per_epoch: int, batch_size: int) -> float:
        """This amount in epochs of ``samples_per_epoch`` training samples, in batches of ``batch_size``."""
        _check_sizes(samples_per_epoch, batch_size)
        if self.unit == "epochs":
            return self.value
        if self.unit == "samples":
            return self.value / samples_per_epoch
        return self.value / math.ceil(samples_per_epoch / batch_size)

    def steps(self, samples_per_epoch: int, batch_size: int) -> int:
        """This amount in optimizer steps (rounded up; an epoch's last batch may be short)."""
        _check_sizes(samples_per_epoch, batch_size)
        if self.unit == "steps":
            return math.ceil(self.value)
        if self.unit == "samples":
            return math.ceil(self.value / batch_size)
        return math.ceil(self.value * math.ceil(samples_per_epoch / batch_size))

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"


def _check_sizes(samples_per_epoch: int, batch_size: int) -> None:
    if samples_per_epoch < 1 or batch_size < 1:
        raise ValueError(f"samples_per_epoch and batch_size must be at least 1, got {samples_per_epoch}, {batch_size}.")


def validation_rounds(amount: str | float | Amount, samples_per_epoch: int, batch_size: int, val_interval: int) -> int:
    """How many validations (one every ``val_interval`` epochs) cover ``amount`` of training: at least 1.

    This is the patience that MONAI's ``EarlyStopHandler`` and ``ReduceLROnPlateau`` count in.

    Args:
        amount: the amount of training, e.g. ``"3000 samples"``.
        samples_per_epoch: training samples per epoch.
        batch_size: training batch size.
        val_interval: epochs between validations.
    """
    if val_interval < 1:
        raise ValueError(f"val_interval must be at least 1, got {val_interval}.")
    epochs = Amount.parse(amount).epochs(samples_per_epoch, batch_size)
    return max(1, math.ceil(epochs / val_interval - 1e-9))
