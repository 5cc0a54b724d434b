"""A NaN loss stops training before the optimizer step, so the weights stay finite."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss

from pipeline.training import NonFiniteLossError, StopOnNonFiniteLoss


def _trainer(bad_iteration: int) -> SupervisedTrainer:
    torch.manual_seed(0)
    network = torch.nn.Conv2d(1, 1, 3, padding=1)
    dice_ce = DiceCELoss(sigmoid=True)
    calls = {"n": 0}

    def loss(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        value = dice_ce(pred, label)
        return value * float("nan") if calls["n"] == bad_iteration else value

    data = [{"image": torch.rand(2, 1, 16, 16), "label": (torch.rand(2, 1, 16, 16) > 0.5).float()} for _ in range(3)]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=data,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-1),
        loss_function=loss,
        train_handlers=[StopOnNonFiniteLoss()],
    )
    return trainer


def test_nan_loss_stops_with_finite_weights():
    trainer = _trainer(bad_iteration=5)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 2, iteration 5"):
        trainer.run()
    assert all(torch.isfinite(p).all() for p in trainer.network.parameters())


def test_finite_losses_run_to_the_end():
    trainer = _trainer(bad_iteration=-1)
    trainer.run()
    assert trainer.state.epoch == 2
