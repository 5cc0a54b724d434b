"""Dice per 3D volume, as the ACDC challenge scores: the slices of each volume pooled, then averaged over volumes.

A datalist of 3D volumes trains on their slices (:mod:`pipeline.intake.volumes`), and the per-slice figures then
weigh a small structure near the apex as much as the whole mid-ventricle. :class:`VolumeDice` pools the overlap
counts of every slice of a volume (the ``volume`` key each slice item carries), scores each volume and structure, and
reports the mean over volumes and structures (``val_dice_3d``) and each structure's mean (``val_dice_3d_<name>``).
The volume of a slice is its image file (``filename_or_obj`` in the image's metadata).
A structure absent from a volume's label and from its prediction is left out; predicted where it is absent, it scores
0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from ignite.metrics import Metric

from pipeline.evaluation.structure_metrics import metric_suffix
from pipeline.segments import Structure, structures_from_config

__all__ = ["VolumeDice"]


def _volume_of(item: Mapping[str, Any]) -> str:
    """The volume a decollated output item comes from: its image's file (every slice of a volume shares it)."""
    meta = getattr(item.get("image"), "meta", None) or getattr(item.get("label"), "meta", None) or {}
    return str(meta.get("filename_or_obj", item.get("volume", "")))


def _volume_inputs(output: Any) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
    items = output if isinstance(output, list) else [output]
    return [i["pred"] for i in items], [i["label"] for i in items], [_volume_of(i) for i in items]


class VolumeDice(Metric):
    """Ignite metric: the mean 3D Dice over volumes and structures; each structure's mean is written beside it.

    Args:
        structures: what the model segments (the bundles' ``@structures``).
        output_transform: extracts ``(preds, labels, volume names)`` from the evaluator's output (decollated items
            with ``pred``, ``label`` and ``volume``); the default reads them from the items.
    """

    def __init__(
        self,
        structures: Sequence[Structure | Mapping[str, Any]],
        output_transform: Any = _volume_inputs,
    ) -> None:
        self.structures = structures_from_config(structures)
        self._engine: Engine | None = None
        self._name: str | None = None
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._counts: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros(3, len(self.structures)))

    def update(self, output: tuple[list[torch.Tensor], list[torch.Tensor], list[str]]) -> None:
        for pred, label, volume in zip(*output, strict=True):
            channels = slice(0, 1) if len(self.structures) == 1 else slice(1, None)
            p = torch.as_tensor(pred)[channels].flatten(1) > 0.5
            y = torch.as_tensor(label)[channels].flatten(1) > 0.5
            counts = torch.stack([(p & y).sum(1), p.sum(1), y.sum(1)]).float().cpu()
            self._counts[volume] += counts

    def compute(self) -> float:
        scores = []
        for counts in self._counts.values():
            both, predicted, labelled = counts
            dice = 2 * both / (predicted + labelled).clamp_min(1)
            dice[(predicted == 0) & (labelled == 0)] = float("nan")
            scores.append(dice)
        table = torch.stack(scores) if scores else torch.full((1, len(self.structures)), float("nan"))
        if self._engine is not None and len(self.structures) > 1:
            for column, structure in enumerate(self.structures):
                values = table[:, column][~torch.isnan(table[:, column])]
                mean = float(values.mean()) if values.numel() else float("nan")
                self._engine.state.metrics[f"{self._name}_{metric_suffix(structure)}"] = mean
        valid = table[~torch.isnan(table)]
        return float(valid.mean()) if valid.numel() else float("nan")

    def attach(self, engine: Engine, name: str, usage: Any = None) -> None:  # type: ignore[override]
        self._engine, self._name = engine, name
        if usage is None:
            super().attach(engine, name)
        else:
            super().attach(engine, name, usage)
