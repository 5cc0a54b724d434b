"""Per-structure Dice, IoU and HD95, in 2D per image and in 3D per volume; how an absent structure counts."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from pipeline.evaluation import DiceScore, HD95Handler, IoUScore, StructureMetricHandler, VolumeDice, metric_suffix

THREE = [{"value": 1, "label": "Right lung"}, {"value": 2, "label": "Left lung"}, {"value": 3, "label": "Heart"}]


def _onehot(labels: list[list[int]], classes: int = 4) -> torch.Tensor:
    """(1, classes, H, W) one-hot of a small label map."""
    index = torch.tensor(labels)
    return torch.nn.functional.one_hot(index, classes).permute(2, 0, 1)[None].float()


# prediction, label -> Dice of each structure (NaN: absent from both, left out)
CASES = [
    ([[1, 2], [3, 0]], [[1, 2], [3, 0]], [1.0, 1.0, 1.0]),
    ([[1, 1], [0, 0]], [[1, 0], [0, 0]], [2 / 3, math.nan, math.nan]),
    ([[1, 0], [0, 3]], [[1, 0], [0, 0]], [1.0, math.nan, 0.0]),  # heart predicted where it is absent: 0
    ([[0, 0], [0, 0]], [[2, 2], [0, 0]], [math.nan, 0.0, math.nan]),
]


@pytest.mark.parametrize("pred, label, expected", CASES)
def test_dice_of_several_structures(pred, label, expected):
    score = DiceScore(THREE)._compute_tensor(_onehot(pred), _onehot(label))[0].tolist()
    assert all((math.isnan(a) and math.isnan(b)) or a == pytest.approx(b) for a, b in zip(score, expected, strict=True))


def test_one_structure_scores_as_monai_does():
    pred, label = torch.tensor([[[[1.0, 0.0]]]]), torch.tensor([[[[1.0, 1.0]]]])
    assert DiceScore([{"value": 1}])._compute_tensor(pred, label).item() == pytest.approx(2 / 3)
    assert IoUScore([{"value": 1}])._compute_tensor(pred, label).item() == pytest.approx(0.5)


def _evaluate(metrics: dict, outputs: list[list[dict]]) -> dict:
    engine = Engine(lambda e, batch: batch)
    for name, metric in metrics.items():
        metric.attach(engine, name)
    engine.run(outputs, max_epochs=1)
    return engine.state.metrics


def test_each_structure_gets_its_own_figures():
    items = [{"pred": _onehot(p)[0], "label": _onehot(y)[0]} for p, y, _ in CASES]
    pairs = lambda out: ([i["pred"] for i in out], [i["label"] for i in out])  # noqa: E731
    metrics = _evaluate(
        {
            "val_dice": StructureMetricHandler(DiceScore(THREE), THREE, output_transform=pairs),
            "val_hd95": HD95Handler(structures=THREE, output_transform=pairs),
        },
        [items],
    )
    assert metrics["val_dice_right_lung"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert metrics["val_dice_heart"] == pytest.approx(0.5) and metrics["val_dice_left_lung"] == pytest.approx(0.5)
    assert metrics["val_dice"] == pytest.approx(((1 + 2 / 3 + 1) / 3 + 0.5 + 0.5) / 3)  # the mean of the three
    assert {f"val_hd95_{metric_suffix(s)}" for s in THREE} <= set(metrics)


def test_a_binary_model_gets_no_per_structure_figures():
    pairs = lambda out: ([i["pred"] for i in out], [i["label"] for i in out])  # noqa: E731
    item = {"pred": torch.ones(1, 2, 2), "label": torch.ones(1, 2, 2)}
    metrics = _evaluate(
        {"val_dice": StructureMetricHandler(DiceScore([{"value": 1}]), [{"value": 1}], pairs)}, [[item]]
    )
    assert metrics == {"val_dice": 1.0}


def test_3d_dice_pools_the_slices_of_each_volume():
    def item(volume: str, pred, label) -> dict:
        image = MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": volume})
        return {"image": image, "pred": _onehot(pred)[0], "label": _onehot(label)[0]}

    batches = [
        [item("a.nii.gz", [[1, 1], [0, 0]], [[1, 0], [0, 0]]), item("a.nii.gz", [[0, 0], [0, 0]], [[1, 0], [0, 0]])],
        [item("b.nii.gz", [[2, 0], [0, 0]], [[2, 0], [0, 0]])],
    ]
    metrics = _evaluate({"val_dice_3d": VolumeDice(THREE)}, batches)
    # volume a: right lung 2*1 / (2 + 2) = 0.5 pooled over its two slices; volume b: left lung 1.0
    assert metrics["val_dice_3d_right_lung"] == pytest.approx(0.5) and metrics["val_dice_3d_left_lung"] == 1.0
    assert math.isnan(metrics["val_dice_3d_heart"]) and metrics["val_dice_3d"] == pytest.approx(0.75)
