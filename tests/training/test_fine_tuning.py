"""Dice fine-tuning: cross-entropy alone, then Dice alone at a held learning rate, phase read from the epoch."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events
from monai.losses import DiceCELoss, DiceLoss

from pipeline.training import DiceFineTuning, LrSchedule, create_lr_scheduler, schedule_epochs


@pytest.mark.parametrize(
    ("epochs", "fine_tune", "expected"),
    [
        (30, "0 epochs", 30),
        (30, "10 epochs", 20),
        (30, 2.5, 27),  # rounded up to whole epochs
        (30, "1000 samples", 28),  # 1000 / 640 samples an epoch: 2 epochs
        (30, "160 steps", 29),  # one epoch of 160 steps of 4
    ],
)
def test_schedule_epochs_leaves_the_fine_tuning_out(epochs, fine_tune, expected):
    assert schedule_epochs(epochs, fine_tune, samples_per_epoch=640, batch_size=4) == expected


@pytest.mark.parametrize("fine_tune", ["10 epochs", "12 epochs"])
def test_a_fine_tuning_that_fills_the_run_is_refused_by_name(fine_tune):
    with pytest.raises(ValueError, match=r"--fine_tune .* raise --epochs"):
        schedule_epochs(10, fine_tune, samples_per_epoch=64, batch_size=4)


def _train(epochs: int, after_epoch: int, resume_at: int = 0) -> tuple[list[tuple[float, float]], list[float]]:
    """(lambda_ce, lambda_dice) during each epoch and the learning rate after it, for a warm-up cosine run."""
    loss = DiceCELoss(sigmoid=True)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = create_lr_scheduler("warmup_cosine", optimizer, epochs=after_epoch, samples_per_epoch=8, batch_size=4)
    trainer = Engine(lambda engine, batch: None)
    DiceFineTuning(loss, optimizer, after_epoch=after_epoch, epochs=epochs, learning_rate=1e-4).attach(trainer)
    LrSchedule(scheduler, optimizer=optimizer, epochs=after_epoch).attach(trainer)
    weights: list[tuple[float, float]] = []
    lrs: list[float] = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda _: weights.append((loss.lambda_ce, loss.lambda_dice)))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: lrs.append(optimizer.param_groups[0]["lr"]))
    if resume_at:
        trainer.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "epoch", resume_at))
    trainer.run([0, 1], max_epochs=epochs)
    return weights[::2], lrs


def test_cross_entropy_then_dice_at_the_fine_tuning_rate():
    weights, lrs = _train(epochs=5, after_epoch=3)
    assert weights == [(1.0, 0.0)] * 3 + [(0.0, 1.0)] * 2
    assert lrs[2] == pytest.approx(1e-6)  # the cosine reached its floor at the end of the first phase
    assert lrs[3:] == [1e-4, 1e-4]  # then the Dice phase holds its own rate; the scheduler no longer steps


def test_a_resumed_run_lands_in_the_phase_of_its_epoch():
    weights, lrs = _train(epochs=5, after_epoch=3, resume_at=3)
    assert weights == [(0.0, 1.0)] * 2
    assert lrs == [1e-4, 1e-4]


def test_without_a_dice_phase_the_loss_stays_dice_plus_cross_entropy():
    weights, lrs = _train(epochs=3, after_epoch=3)
    assert weights == [(1.0, 1.0)] * 3
    assert lrs[-1] == pytest.approx(1e-6)


def test_only_a_dice_ce_loss_can_be_fine_tuned():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(TypeError, match="DiceCELoss"):
        DiceFineTuning(DiceLoss(), optimizer, after_epoch=2, epochs=3, learning_rate=1e-4)
