"""Evaluation outputs a reviewer can read: a per-image CSV, a summary JSON and a side-by-side figure.

MONAI's metric handlers keep each image's score in ``engine.state.metric_details`` (``save_details=True``); this
handler pairs those scores with the image names, adds precision, recall and accuracy per image from the confusion
matrix counts, and writes:

- ``per_image.csv``: one row per image (name relative to the dataset folder, every metric, the mask areas and the
  image's pixel count, so that small structures can be scored apart);
- ``summary.json``: mean, standard deviation, median, minimum and maximum of each metric over the images, the
  engine's own aggregate metrics, the number of images and the weights file name(s);
- ``cases.png``: image | ground truth | prediction for a sample of images spread over the Dice ranking, from the
  worst to the best, so that both failure modes and typical results are visible;
- with ``save_cases``, ``cases/<index>_image.png`` (the image as displayed), ``_label.png`` and ``_pred.png`` (0/255
  masks) for every image, named by its row in ``per_image.csv`` so that a comparison of several models
  (:mod:`pipeline.evaluation.compare`) can draw them side by side without reading the dataset again.

Metrics are whatever the evaluator computes: in the bundles they are computed after ``Invertd`` has mapped the
prediction back to the image's native resolution.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.metrics import compute_confusion_matrix_metric

from pipeline.atomic import atomic_output, write_json
from pipeline.bundle import flag
from pipeline.evaluation.structure_metrics import metric_suffix
from pipeline.io import LoadSlice
from pipeline.models import weights_names
from pipeline.outputs import write_image_png, write_label_png, write_mask_png, write_side_by_side
from pipeline.segments import structures_from_config

__all__ = ["EvaluationReport"]

logger = logging.getLogger("pipeline.evaluation")


def _case_name(filename: str, dataset_dir: str | None) -> str:
    if dataset_dir:
        root = os.path.abspath(dataset_dir)
        path = os.path.abspath(filename)
        if os.path.commonpath([root, path]) == root:
            return os.path.relpath(path, root)
    return os.path.basename(filename)


def _sample_indices(order: np.ndarray, count: int) -> list[int]:
    """``count`` positions spread evenly over ``order`` (worst to best), always including both ends."""
    if count <= 0 or len(order) == 0:
        return []
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, min(count, len(order)))).astype(int))
    return [int(order[p]) for p in picks]


class EvaluationReport:
    """Write ``per_image.csv``, ``summary.json`` and ``cases.png`` when an evaluator finishes.

    Args:
        output_dir: folder for the three files (created).
        dataset_dir: images are named relative to this folder (their file name otherwise).
        run_name: what the summary calls the model.
        weights: the weights file evaluated, or the files of an ensemble; only file names (or, for ensemble
            members that share a name, their last three path parts) are written.
        num_figure_cases: rows in ``cases.png`` (0: no figure).
        window: intensity window for the figure (e.g. the CT lung window); ``None``: 1st-99th percentile.
        confusion_metrics: metric names the evaluator computes with MONAI's ``ConfusionMatrix`` handler, mapped to
            the confusion-matrix metric each one is (their per-image details are TP/FP/TN/FN counts).
        dice_metric: the evaluator metric that ranks the images for the figure.
        save_cases: also write every image with its ground truth and prediction as PNGs under ``cases/`` (a bool, or
            the ``--save_cases`` setting as typed: :func:`pipeline.bundle.flag`).
        structures: what the model segments; with several, ``per_image.csv`` has each structure's Dice, IoU and
            HD95 besides their mean, the masks are kept as label maps, and the slices of 3D volumes are named
            ``<file>:<slice>``.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        dataset_dir: str | os.PathLike | None = None,
        run_name: str = "model",
        weights: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        num_figure_cases: int = 6,
        window: tuple[float, float] | None = None,
        confusion_metrics: dict[str, str] | None = None,
        dice_metric: str = "val_dice",
        save_cases: bool | str = False,
        structures: Sequence[Any] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.dataset_dir = os.fspath(dataset_dir) if dataset_dir else None
        self.run_name = run_name
        self.weights_name = weights_names(weights)
        self.num_figure_cases = num_figure_cases
        self.window = tuple(window) if window is not None else None
        self.confusion_metrics = confusion_metrics or {
            "val_precision": "precision",
            "val_recall": "recall",
            "val_accuracy": "accuracy",
        }
        self.dice_metric = dice_metric
        self.save_cases = flag(save_cases, "save_cases")
        self.structures = structures_from_config(structures) if structures else []
        self._start = 0.0
        self._files: list[str] = []
        self._slices: list[int | None] = []
        self._masks: list[tuple[tuple[int, int], np.ndarray, np.ndarray]] = []

    def attach(self, engine: Engine) -> None:
        """Collect names and masks after each iteration; write everything when the run completes."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self._files, self._masks, self._slices = [], [], []
        self._start = time.perf_counter()

    def _collect(self, engine: Engine) -> None:
        for item in engine.state.output:
            meta = item["image"].meta
            self._files.append(str(meta.get("filename_or_obj", f"case_{len(self._files)}")))
            self._slices.append(meta.get("slice_index"))
            pred, label = _label_map(item["pred"]), _label_map(item["label"])
            if pred.max(initial=0) <= 1 and label.max(initial=0) <= 1:  # one structure: a bit per pixel
                self._masks.append((pred.shape, np.packbits(pred), np.packbits(label)))
            else:
                self._masks.append((pred.shape, pred, label))

    def _per_image(self, engine: Engine) -> dict[str, np.ndarray]:
        details: dict[str, Any] = getattr(engine.state, "metric_details", {})
        columns: dict[str, np.ndarray] = {}
        for name, values in details.items():
            values = torch.as_tensor(values).float()
            if name in self.confusion_metrics:
                values = compute_confusion_matrix_metric(self.confusion_metrics[name], values)
            values = values.reshape(len(values), -1)
            if len(values) != len(self._files):
                logger.warning(
                    "metric %s has %d per-image values for %d images; left out", name, len(values), len(self._files)
                )
                continue
            columns[name.removeprefix("val_")] = _nanmean(values)  # one number per image (mean over structures)
            if values.shape[1] > 1 and len(self.structures) == values.shape[1]:
                for column, structure in enumerate(self.structures):
                    columns[f"{name.removeprefix('val_')}_{metric_suffix(structure)}"] = values[:, column].numpy()
        return columns

    def _write(self, engine: Engine) -> None:
        seconds = time.perf_counter() - self._start  # loading, preprocessing, inference, postprocessing, metrics
        self.output_dir.mkdir(parents=True, exist_ok=True)
        names = [
            _case_name(f, self.dataset_dir) + ("" if k is None else f":{int(k)}")
            for f, k in zip(self._files, self._slices, strict=True)
        ]
        columns = self._per_image(engine)
        unpacked = [self._unpack(i) for i in range(len(self._masks))]
        pred_px = [int(np.count_nonzero(pred)) for _, pred in unpacked]
        label_px = [int(np.count_nonzero(label)) for label, _ in unpacked]
        image_px = [int(np.asarray(label).size) for label, _ in unpacked]  # the native image's pixels

        csv_path = self.output_dir / "per_image.csv"
        with atomic_output(csv_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", *columns, "label_px", "pred_px", "image_px"])
            for i, name in enumerate(names):
                row = [name, *(f"{columns[c][i]:.6f}" for c in columns), label_px[i], pred_px[i], image_px[i]]
                writer.writerow(row)

        summary = {
            "model": self.run_name,
            "weights": self.weights_name,
            "num_images": len(names),
            "seconds_per_image": seconds / max(len(names), 1),
            "resolution": "native (metrics computed on each image's own pixel grid)",
            "metrics": {k.removeprefix("val_"): float(v) for k, v in engine.state.metrics.items()},
            "per_image_statistics": {name: _statistics(v) for name, v in columns.items() if len(v)},
            "outputs": ["per_image.csv", "summary.json"],
        }
        if self.save_cases:
            self._write_cases()
            summary["outputs"].append("cases/")
        figure = self._write_figure(names, columns)
        if figure is not None:
            summary["outputs"].append(figure.name)
        write_json(summary, self.output_dir / "summary.json")
        shown = ", ".join(f"{k} {v:.4f}" for k, v in summary["metrics"].items())
        logger.info(
            "evaluation of %s on %d images: %s; written to %s", self.run_name, len(names), shown, self.output_dir
        )

    def _unpack(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(label, pred)`` of image ``i``: binary masks, or label maps of structure indices."""
        shape, pred, label = self._masks[i]
        if pred.shape == shape:  # kept as label maps
            return label, pred
        size = shape[0] * shape[1]
        return np.unpackbits(label)[:size].reshape(shape), np.unpackbits(pred)[:size].reshape(shape)

    def _write_cases(self) -> None:
        loader = LoadSlice()
        for i, filename in enumerate(self._files):
            label, pred = self._unpack(i)
            stem = self.output_dir / "cases" / f"{i:04d}"
            image = loader(filename, slice_index=self._slices[i]).numpy().mean(axis=0)
            write_image_png(image, f"{stem}_image.png", window=self.window)
            if len(self.structures) > 1:  # label maps in the dataset's values
                values = np.array([0, *(s.value for s in self.structures)], dtype=np.uint8)
                write_label_png(values[label], f"{stem}_label.png")
                write_label_png(values[pred], f"{stem}_pred.png")
            else:
                write_mask_png(label, f"{stem}_label.png")
                write_mask_png(pred, f"{stem}_pred.png")

    def _write_figure(self, names: list[str], columns: dict[str, np.ndarray]) -> Path | None:
        dice_key = self.dice_metric.removeprefix("val_")
        if self.num_figure_cases <= 0 or not names:
            return None
        dice = columns.get(dice_key)
        order = np.argsort(np.nan_to_num(dice, nan=-1.0)) if dice is not None else np.arange(len(names))
        loader = LoadSlice()
        cases = []
        for i in _sample_indices(order, self.num_figure_cases):
            label, pred = self._unpack(i)
            cases.append(
                {
                    "name": names[i],
                    "image": loader(self._files[i], slice_index=self._slices[i]).numpy().mean(axis=0),
                    "label": label,
                    "pred": pred,
                    **({"dice": float(dice[i])} if dice is not None else {}),
                }
            )
        return write_side_by_side(cases, self.output_dir / "cases.png", window=self.window, structures=self.structures)


def _label_map(mask: Any) -> np.ndarray:
    """(H, W) uint8 of a prediction or label: a binary channel as 0/1, one-hot channels as the structure's index."""
    mask = torch.as_tensor(mask).detach().cpu()
    if mask.shape[0] == 1:
        return (mask[0] > 0.5).numpy().astype(np.uint8)
    return (mask.argmax(dim=0) * (mask.amax(dim=0) > 0.5)).numpy().astype(np.uint8)


def _nanmean(values: torch.Tensor) -> np.ndarray:
    """Each row's mean over its non-NaN values (NaN for a row of NaN only)."""
    finite = ~torch.isnan(values)
    totals = torch.where(finite, values, torch.zeros_like(values)).sum(dim=1)
    counts = finite.sum(dim=1)
    return torch.where(counts > 0, totals / counts.clamp_min(1), torch.full_like(totals, float("nan"))).numpy()


def _statistics(values: np.ndarray) -> dict[str, float]:
    """Mean, std, median, min and max over the finite values (all NaN when none is: HD95 of empty predictions)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[~np.isnan(finite)]
    if not finite.size:
        return dict.fromkeys(("mean", "std", "median", "min", "max"), float("nan"))
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "median": float(np.median(finite)),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }
