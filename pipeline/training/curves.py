"""Learning curves as a picture: loss, learning rate and validation metrics against epoch (``curves.png``)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.atomic import atomic_output

__all__ = ["write_curves"]

_UNIT_METRICS = ("val_iou", "val_dice", "val_precision", "val_recall", "val_accuracy")


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    points = [(row["epoch"], row[key]) for row in history if key in row and not math.isnan(row[key])]
    return [p[0] for p in points], [p[1] for p in points]


def _structure_dice(history: Sequence[Mapping[str, float]]) -> list[str]:
    """The per-structure Dice keys of a run of several structures (``val_dice_right_lung``...), in first-seen order."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k.startswith("val_dice_") and not k.startswith("val_dice_3d") and k not in keys]
    return keys


def write_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike, title: str = "") -> Path:
    """Draw the per-epoch rows of a training run (``metrics.csv``'s) and write the figure atomically.

    Three panels: training loss with the learning rate (log scale, right axis); the validation metrics that lie in
    [0, 1] (IoU, Dice, precision, recall, accuracy, and each structure's Dice for a model of several); and HD95 in
    pixels, when it was measured.

    Args:
        history: rows with ``epoch``, ``loss``, ``lr`` and any ``val_*`` metric.
        path: the PNG file.
        title: the figure's title (the model's name).

    Returns:
        ``path`` as a ``Path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    has_hd95 = any("val_hd95" in row for row in history)
    figure, axes = plt.subplots(1, 3 if has_hd95 else 2, figsize=(13 if has_hd95 else 9, 3.4), layout="constrained")
    loss_axis = axes[0]
    loss_axis.plot(*_series(history, "loss"), color="tab:blue", marker=".", label="loss")
    loss_axis.set(xlabel="epoch", ylabel="training loss", title="loss and learning rate")
    lr_axis = loss_axis.twinx()
    epochs, rates = _series(history, "lr")
    if rates and min(rates) > 0:
        lr_axis.semilogy(epochs, rates, color="tab:orange", linestyle="--", label="learning rate")
    lr_axis.set_ylabel("learning rate", color="tab:orange")
    validated = False
    for key in _UNIT_METRICS:
        epochs, values = _series(history, key)
        if values:
            axes[1].plot(epochs, values, marker=".", label=key.removeprefix("val_"))
            validated = True
    for key in _structure_dice(history):  # several structures: each one's Dice, thin and dashed
        epochs, values = _series(history, key)
        if values:
            axes[1].plot(epochs, values, linestyle="--", linewidth=1, label=key.removeprefix("val_"))
    axes[1].set(xlabel="epoch", ylabel="validation", ylim=(0, 1), title="validation metrics")
    if validated:  # before the first validation (``--val_interval`` above 1) there is nothing to name
        axes[1].legend(loc="lower right", fontsize="small")
    if has_hd95:
        axes[2].plot(*_series(history, "val_hd95"), color="tab:red", marker=".")
        axes[2].set(xlabel="epoch", ylabel="pixels", title="validation HD95 (lower is better)")
    for axis in axes:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        figure.suptitle(title)
    path = Path(path)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)
    return path
