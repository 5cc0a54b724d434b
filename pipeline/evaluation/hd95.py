"""95th-percentile Hausdorff distance that counts a missed or spurious segmentation instead of skipping it.

MONAI's ``HausdorffDistanceMetric`` returns NaN for a case whose prediction or ground truth is empty, and the mean
then silently leaves that case out: a model that predicts nothing on half the images would report the HD95 of the
other half. Here such a case scores the image diagonal (the largest distance possible in the image), and a case where
both are empty scores 0 (nothing to find, nothing found).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.metrics import HausdorffDistanceMetric

from pipeline.evaluation.structure_metrics import StructureMetricHandler

__all__ = ["HD95Handler", "HD95Metric"]


class HD95Metric(HausdorffDistanceMetric):
    """HD95 in pixels per case and channel, with empty predictions or labels scored instead of skipped.

    Args:
        include_background: whether to score the first channel; keep ``True`` for single-channel binary outputs.
        reduction: MONAI reduction over cases, default ``"mean"``.
        ignore_absent: a case and channel with neither prediction nor label is left out of the mean (NaN) instead of
            scoring 0: a model of several structures counts a structure only where it is, or is predicted
            (:mod:`pipeline.evaluation.overlap`).
    """

    def __init__(self, include_background: bool = True, reduction: str = "mean", ignore_absent: bool = False) -> None:
        super().__init__(include_background=include_background, percentile=95, reduction=reduction)
        self.ignore_absent = ignore_absent

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """Score a batch.

        Args:
            y_pred: binarised prediction, (B, C, H, W).
            y: binary ground truth, (B, C, H, W).

        Returns:
            (B, C) distances in pixels (or in the units of ``spacing`` when given).
        """
        with warnings.catch_warnings():  # MONAI warns per empty case; the score below replaces its NaN
            warnings.filterwarnings("ignore", message=".*all 0, this may result in nan/inf distance.*")
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
            distance = super()._compute_tensor(y_pred, y, **kwargs)
        channels = slice(None) if self.include_background else slice(1, None)
        pred_empty = y_pred[:, channels].flatten(2).sum(-1) == 0
        label_empty = y[:, channels].flatten(2).sum(-1) == 0
        diagonal = float(torch.linalg.vector_norm(torch.tensor(y.shape[2:], dtype=torch.float32)))
        distance = distance.to(torch.float32).clone()
        distance[pred_empty ^ label_empty] = diagonal
        distance[pred_empty & label_empty] = float("nan") if self.ignore_absent else 0.0
        return distance


class HD95Handler(StructureMetricHandler):
    """Ignite handler for :class:`HD95Metric`, used like MONAI's ``HausdorffDistance`` handler; with several
    ``structures``, it also reports each structure's HD95 (:class:`StructureMetricHandler`).

    Args:
        include_background: see :class:`HD95Metric`.
        output_transform: extracts ``(y_pred, y)`` from the engine output.
        save_details: keep per-case values in ``engine.state.metric_details``.
        structures: what the model segments; several leave the background out and score an absent structure only
            where it is predicted.
    """

    def __init__(
        self,
        include_background: bool = True,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
        structures: Sequence[Any] | None = None,
    ) -> None:
        several = bool(structures) and len(structures) > 1
        super().__init__(
            metric_fn=HD95Metric(include_background=include_background and not several, ignore_absent=several),
            structures=structures,
            output_transform=output_transform,
            save_details=save_details,
        )
