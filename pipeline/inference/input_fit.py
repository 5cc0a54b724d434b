"""Each input compared with what the model was trained on, before the model runs, and each result after it.

A model card records its training data in numbers (:meth:`pipeline.intake.DatasetReport.fingerprint`): channels,
value range, whether the values are whole numbers, intensity mean and spread, image sizes and the foreground share.
:class:`InputFit` holds that fingerprint and the model's modality and channels, and answers two questions:

- :meth:`InputFit.check` (before the model): can this input be what the model was trained on? Inputs that cannot
  are refused with :class:`InputFitError`, whose message names the input, what the model expects, what was found and
  the override that segments it anyway (``--force_input true``, which turns the refusal into a flag): a constant
  image, an image that never goes below 0 for a model of Hounsfield units (an 8-bit export of a CT slice), colour for
  a model trained on grey images. Milder departures come back as flags: for a model of Hounsfield units, values or a
  mean well outside the training data's (other modalities are scaled per image, so their raw values are not
  compared); for any model, a size far beyond the training images' or a grey image for a colour model.
- :meth:`InputFit.check_result` (after it): does the result look like the training masks? No foreground where every
  training mask had some, or a foreground share far above any training mask's, is flagged.

A flagged input is written as usual; its status is ``flagged`` with the reasons, in ``summary.json``, its
``report.json`` and the log, and the command's exit status says so (:data:`EXIT_FLAGGED`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.bundle import flag
from pipeline.intake.image_kind import is_colour
from pipeline.transforms.array import AIR_HU

__all__ = ["EXIT_FLAGGED", "InputFit", "InputFitError"]

logger = logging.getLogger("pipeline.inference")

EXIT_FLAGGED = 3
"""The inference command's exit status when every input was written but at least one is flagged (0: all ok; 1: at
least one failed or the run could not start)."""

_CONSTANT = 1e-6


class InputFitError(ValueError):
    """An input that cannot be what the model was trained on; the message names the override that accepts it."""


def _range(low: float, high: float) -> str:
    return f"{low:g} to {high:g}"


class InputFit:
    """What the model was trained on, checked against each input and each result.

    Args:
        data: the model card's training fingerprint (``card.data``); empty for weights without a card, which leaves
            only the checks that need no training figures (a constant image).
        modality: the model's modality (``CT`` windows Hounsfield units).
        in_channels: the model's input channels.
        force: segment inputs that would be refused, flagging them instead (``--force_input``).
    """

    def __init__(
        self, data: Mapping[str, Any] | None = None, modality: str = "CT", in_channels: int = 1, force: bool = False
    ) -> None:
        self.data = dict(data or {})
        self.modality = str(modality).strip().upper()
        self.in_channels = int(in_channels)
        self.force = flag(force, "force_input")
        intensity = self.data.get("intensity") or {}
        self.train_min = intensity.get("min")
        self.train_max = intensity.get("max")
        self.train_mean = intensity.get("mean")
        self.train_std = intensity.get("std")
        self.train_channels = tuple(self.data.get("channels") or ())
        self.hounsfield = self.modality == "CT" and self.train_min is not None and self.train_min < AIR_HU

    def _expected(self) -> str:
        parts = [f"{self.modality} images"]
        if self.hounsfield:
            parts.append("in Hounsfield units")
        if self.train_min is not None and self.train_max is not None:
            parts.append(f"(training values {_range(self.train_min, self.train_max)})")
        return " ".join(parts)

    def check(self, name: str, array: Any, volume: bool = False) -> list[str]:
        """Refuse an input that cannot be what the model was trained on; return the milder departures.

        Args:
            name: how messages name the input (a file name or a series label, never a path).
            array: the input as read, before any scaling, in the units training read (Hounsfield units for CT): an
                image (C, H, W), or with ``volume`` the slices of a series or volume (N, H, W).
            volume: whether ``array`` is (N, H, W) slices rather than (C, H, W) channels.

        Returns:
            Flags (reasons), empty when the input looks like the training data.

        Raises:
            InputFitError: naming ``name``, what the model expects, what was found and ``--force_input true``;
                unless ``force``, which returns the reason as a flag instead.
        """
        values = np.asarray(array, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        refusals, flags = [], []
        if high - low <= _CONSTANT * max(1.0, abs(high)):
            refusals.append(f"every pixel is {low:g} (a constant image): there is nothing to segment")
        elif self.hounsfield and low >= 0:
            depth = " (an 8-bit export?)" if high <= 255 and np.all(values == np.round(values)) else ""
            refusals.append(
                f"values {_range(low, high)} never go below 0{depth}, but the model was trained on {self._expected()}: "
                "CT in Hounsfield units has air near -1000"
            )
        image = not volume and values.ndim == 3
        colour = image and is_colour(values)  # grey stored as RGB, with a burnt-in marker, is not
        if colour and self.train_channels == (1,):
            refusals.append(f"a colour image, but the model was trained on grey ones ({self._expected()})")
        if image and not colour and self.in_channels == 3 and 3 in self.train_channels:
            flags.append("a grey image for a model trained on colour ones")
        if not refusals:
            flags += self._range_flags(values, low, high)
        if refusals and not self.force:
            raise InputFitError(
                f"{name}: {'; '.join(refusals)}. Pass --force_input true (force_input=True) to segment it anyway; "
                "the result is then flagged"
            )
        return [f"refused without --force_input: {r}" for r in refusals] + flags

    def _range_flags(self, values: np.ndarray, low: float, high: float) -> list[str]:
        """Departures in value range and mean (for a model of Hounsfield units only: other modalities are scaled per
        image by percentiles, so their raw values mean nothing to the model) and in size (well beyond a resize's
        reach: a quarter of the smallest or 8 times the largest training image)."""
        flags = []
        if self.hounsfield and self.train_min is not None and self.train_max is not None:
            span = max(self.train_max - self.train_min, 1e-6)
            if low < self.train_min - 0.5 * span or high > self.train_max + 0.5 * span:
                flags.append(
                    f"values {_range(low, high)} reach far beyond the training values "
                    f"{_range(self.train_min, self.train_max)}"
                )
        if self.hounsfield and self.train_mean is not None and self.train_std:
            mean = float(values.mean(dtype=np.float64))
            if abs(mean - self.train_mean) > 3 * self.train_std:
                flags.append(
                    f"mean intensity {mean:.4g} is more than 3 standard deviations from the training mean "
                    f"{self.train_mean:.4g} (spread {self.train_std:.4g})"
                )
        height, width = values.shape[-2:]
        sizes = [self.data.get(axis) or {} for axis in ("height", "width")]
        if all("min" in s and "max" in s for s in sizes):
            smallest = min(s["min"] for s in sizes)
            largest = max(s["max"] for s in sizes)
            if min(height, width) < smallest / 4 or max(height, width) > 8 * largest:
                flags.append(f"{height} x {width} pixels, while the training images were {smallest} to {largest}")
        return flags

    def check_result(self, foreground_share: float | Sequence[float]) -> list[str]:
        """Flags for a result: the share of foreground pixels (any structure) of an image, or of each slice of a
        series, against the training masks'.

        Args:
            foreground_share: a share in [0, 1], or one per slice.

        Returns:
            Flags (reasons); empty when the result is within what training saw, or the card does not record it.
        """
        shares = np.atleast_1d(np.asarray(foreground_share, dtype=np.float64))
        flags = []
        always = self.data.get("empty_masks") == 0 and (self.data.get("pairs") or 0) > 0
        if always and shares.size and not shares.any():
            flags.append("no foreground, while every training mask had some")
        share_range = self.data.get("foreground_range")
        if share_range and shares.size:
            top = float(shares.max())
            if top > min(1.0, 1.5 * share_range[1] + 0.05):
                flags.append(f"foreground covers {top:.0%} of a slice, training masks at most {share_range[1]:.0%}")
        return flags


def quality(flags: Sequence[str]) -> dict[str, Any]:
    """The ``quality`` entry of a report: ``{"status": "ok"}`` or ``{"status": "flagged", "flags": [...]}``."""
    return {"status": "flagged", "flags": list(flags)} if flags else {"status": "ok"}
