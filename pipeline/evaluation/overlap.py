"""Dice and IoU per image and structure, for one structure as MONAI scores it and for several as nnU-Net does.

One structure (a binary model): MONAI's ``DiceMetric`` and ``MeanIoU`` with their defaults, the figures the bundles
have always reported (an image whose mask is empty is left out). Several structures (one-hot predictions and labels,
background first): the background channel is left out, and a structure absent from an image's label is judged by
what the model does there: predicting none of it leaves the pair out of the means (nothing to find, nothing found),
predicting some of it scores 0 (a false positive that MONAI's default would hide).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.metrics import DiceMetric, MeanIoU

from pipeline.segments import Structure, is_binary

__all__ = ["DiceScore", "IoUScore"]


def _absent_in_both(y_pred: torch.Tensor, y: torch.Tensor, include_background: bool) -> torch.Tensor:
    channels = slice(None) if include_background else slice(1, None)
    return (y_pred[:, channels].flatten(2).sum(-1) == 0) & (y[:, channels].flatten(2).sum(-1) == 0)


class DiceScore(DiceMetric):
    """Dice of ``(B, C, H, W)`` binarised predictions against labels, per image and structure.

    Args:
        structures: what the model segments (the bundles' ``@structures``); see the module docstring.
        reduction: MONAI's reduction over images and structures (``"mean"``: the mean over both, NaN left out).
    """

    def __init__(self, structures: Sequence[Structure | Mapping[str, Any]], reduction: str = "mean") -> None:
        self.binary = is_binary(structures)
        super().__init__(include_background=self.binary, reduction=reduction, ignore_empty=self.binary)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        score = super()._compute_tensor(y_pred, y)
        if not self.binary:
            score = score.float().clone()
            score[_absent_in_both(y_pred, y, self.include_background)] = float("nan")
        return score


class IoUScore(MeanIoU):
    """IoU of ``(B, C, H, W)`` binarised predictions against labels, per image and structure.

    Args:
        structures: what the model segments (the bundles' ``@structures``); see the module docstring.
        reduction: MONAI's reduction over images and structures.
    """

    def __init__(self, structures: Sequence[Structure | Mapping[str, Any]], reduction: str = "mean") -> None:
        self.binary = is_binary(structures)
        super().__init__(include_background=self.binary, reduction=reduction, ignore_empty=self.binary)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        score = super()._compute_tensor(y_pred, y)
        if not self.binary:
            score = score.float().clone()
            score[_absent_in_both(y_pred, y, self.include_background)] = float("nan")
        return score
