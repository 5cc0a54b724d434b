"""Dice fine-tuning: cross-entropy first, then Dice alone at a lower learning rate (the polyp seed's recipe).

The U-Net this project grew from for colonoscopy polyps trained on binary cross-entropy, then fine-tuned on Dice at
1e-4. Here both phases use the run's one ``DiceCELoss``: :class:`DiceFineTuning` sets its ``lambda_ce`` and
``lambda_dice`` at the start of every epoch from the epoch number alone, so that a resumed run lands in the right
phase, and holds the learning rate during the Dice phase. The run's learning-rate schedule covers the first phase
only (:func:`schedule_epochs` is its length).
"""

from __future__ import annotations

import logging
import math

import torch
from ignite.engine import Engine, Events
from monai.losses import DiceCELoss

from pipeline.training.amount import Amount

__all__ = ["DiceFineTuning", "schedule_epochs"]

logger = logging.getLogger(__name__)


def schedule_epochs(epochs: int, fine_tune: str | float | Amount, samples_per_epoch: int, batch_size: int) -> int:
    """The epochs before the Dice fine-tuning: the whole run when ``fine_tune`` is 0.

    Args:
        epochs: epochs in the run.
        fine_tune: the Dice fine-tuning at the end of the run, e.g. ``"10 epochs"`` (rounded up to whole epochs).
        samples_per_epoch: training samples per epoch.
        batch_size: training batch size.

    Raises:
        ValueError: the fine-tuning leaves no epoch before it.
    """
    tuned = math.ceil(Amount.parse(fine_tune).epochs(samples_per_epoch, batch_size) - 1e-9)
    if tuned and tuned >= epochs:
        raise ValueError(
            f"--fine_tune {fine_tune!r} ({tuned} epochs of Dice fine-tuning) leaves none of the {epochs} epochs for "
            "the cross-entropy phase before it: raise --epochs or lower --fine_tune."
        )
    return int(epochs) - tuned


class DiceFineTuning:
    """Train on cross-entropy alone through ``after_epoch``, then on Dice alone at ``learning_rate``.

    Attach it to the trainer before the learning-rate handler; give that handler and the scheduler
    :func:`schedule_epochs` as their length, so that they leave the learning rate alone in the Dice phase. When
    ``after_epoch`` is the whole run the handler does nothing and the loss stays Dice + cross-entropy.

    Args:
        loss: the run's loss; its ``lambda_ce`` and ``lambda_dice`` are set every epoch.
        optimizer: the optimizer whose learning rate the Dice phase holds.
        after_epoch: the last epoch of the cross-entropy phase (:func:`schedule_epochs`).
        epochs: epochs in the run.
        learning_rate: the learning rate of the Dice phase.
    """

    def __init__(
        self, loss: DiceCELoss, optimizer: torch.optim.Optimizer, after_epoch: int, epochs: int, learning_rate: float
    ) -> None:
        if not isinstance(loss, DiceCELoss):
            raise TypeError(f"Dice fine-tuning needs MONAI's DiceCELoss, got {type(loss).__name__}.")
        self.loss = loss
        self.optimizer = optimizer
        self.after_epoch = int(after_epoch)
        self.epochs = int(epochs)
        self.learning_rate = float(learning_rate)

    @property
    def active(self) -> bool:
        """Whether the run has a Dice phase."""
        return self.after_epoch < self.epochs

    def attach(self, engine: Engine) -> None:
        if self.active:
            engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        dice = epoch > self.after_epoch
        self.loss.lambda_ce, self.loss.lambda_dice = (0.0, 1.0) if dice else (1.0, 0.0)
        if dice:
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate
        if epoch == self.after_epoch + 1:
            logger.info("epoch %d: Dice fine-tuning at learning rate %g", epoch, self.learning_rate)
        elif epoch == 1:
            logger.info("epoch 1: cross-entropy alone through epoch %d, then Dice fine-tuning", self.after_epoch)
