"""Each structure's own validation figures, beside their mean over structures.

With several structures, the metric handlers score every image and structure, and report the mean over foreground
structures of each structure's mean over images: ``val_dice``, the figure that chooses the best model.
:class:`StructureMetricHandler` also writes each structure's mean over images from the same scores
(``val_dice_right_lung``, ``val_iou_heart``, ``val_hd95_myocardium``...), so that the log line, ``metrics.csv``,
TensorBoard, MLflow and ``summary.json`` show which structure a model gets right. A binary model's figures stay as
they are. How a structure absent from an image counts is :mod:`pipeline.evaluation.overlap`'s rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric

from pipeline.segments import Structure, structures_from_config

__all__ = ["StructureMetricHandler", "metric_suffix"]


def metric_suffix(structure: Structure | Mapping[str, Any]) -> str:
    """How metric names call a structure: its label in lower case, words joined by ``_`` (``right_lung``)."""
    label = structure["label"] if isinstance(structure, Mapping) else structure.label
    return re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_") or "structure"


class StructureMetricHandler(IgniteMetricHandler):
    """MONAI's ``IgniteMetricHandler`` that, for several structures, also reports each structure's mean.

    The metric must score ``(images, structures)`` without the background channel (:class:`DiceScore`,
    :class:`IoUScore`, :class:`HD95Metric` with ``include_background=False``).

    Args:
        metric_fn: the per-image, per-structure metric.
        structures: what the model segments (the bundles' ``@structures``); one structure adds nothing.
        output_transform: extracts ``(y_pred, y)`` from the engine output.
        save_details: keep per-image values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        metric_fn: CumulativeIterationMetric,
        structures: Sequence[Structure | Mapping[str, Any]] | None = None,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
        self.structures = structures_from_config(structures) if structures else []

    def compute(self) -> Any:
        result = super().compute()
        if len(self.structures) < 2 or self._engine is None:
            return result
        scores = torch.as_tensor(self.metric_fn.get_buffer(), dtype=torch.float32)
        scores = scores.reshape(-1, len(self.structures))
        means = []
        for column, structure in enumerate(self.structures):
            values = scores[:, column][~torch.isnan(scores[:, column])]
            means.append(float(values.mean()) if values.numel() else float("nan"))
            self._engine.state.metrics[f"{self._name}_{metric_suffix(structure)}"] = means[-1]
        known = [m for m in means if not math.isnan(m)]
        return sum(known) / len(known) if known else float("nan")  # the mean over structures of their means
