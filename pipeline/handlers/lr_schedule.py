"""Learning-rate schedules chosen by name, stepped once per epoch.

The seeds used two recipes: reduce-on-plateau of the validation metric (CE-Net, U-Net) and cosine annealing with
warm restarts for snapshot ensembles (Inception U-Net). MONAI's ``LrScheduleHandler`` steps a scheduler on the
engine it is attached to, so the two would need different engines in the config; this handler takes either and
steps it at the end of each training epoch, after validation has run.
"""

from __future__ import annotations

import logging

import torch
from ignite.engine import Engine, Events
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, LRScheduler, ReduceLROnPlateau

__all__ = ["LR_SCHEDULES", "EpochLrSchedule", "create_lr_scheduler"]

logger = logging.getLogger(__name__)

LR_SCHEDULES = ("plateau", "cosine", "constant")


def create_lr_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    plateau_factor: float = 0.5,
    plateau_patience: int = 5,
    cosine_cycle: int = 10,
    min_lr: float = 1e-6,
) -> LRScheduler | ReduceLROnPlateau | None:
    """Build a learning-rate scheduler by name.

    Args:
        name: ``"plateau"`` (reduce when the validation key metric stops improving; it is maximised),
            ``"cosine"`` (cosine annealing with warm restarts every ``cosine_cycle`` epochs, the snapshot recipe)
            or ``"constant"`` (no scheduler).
        optimizer: the optimizer whose learning rate is scheduled.
        plateau_factor: factor applied to the learning rate on a plateau. Default 0.5.
        plateau_patience: epochs without improvement before reducing. Default 5.
        cosine_cycle: length in epochs of each cosine cycle. Default 10.
        min_lr: floor of the learning rate for both schedules. Default 1e-6.

    Returns:
        The scheduler, or ``None`` for ``"constant"``.

    Raises:
        ValueError: for an unknown ``name``.
    """
    if name == "plateau":
        return ReduceLROnPlateau(optimizer, mode="max", factor=plateau_factor, patience=plateau_patience, min_lr=min_lr)
    if name == "cosine":
        return CosineAnnealingWarmRestarts(optimizer, T_0=cosine_cycle, eta_min=min_lr)
    if name == "constant":
        return None
    raise ValueError(f"unknown lr schedule {name!r}; choose one of {LR_SCHEDULES}.")


class EpochLrSchedule:
    """Step a learning-rate scheduler at the end of every training epoch.

    A ``ReduceLROnPlateau`` is stepped with the evaluator's ``metric_name`` on the epochs when validation ran; any
    other scheduler is stepped once per epoch. Attach it to the trainer after MONAI's ``ValidationHandler`` so that
    the metric is the current epoch's.

    Args:
        lr_scheduler: the scheduler, or ``None`` to do nothing.
        evaluator: the validation engine (needed for ``ReduceLROnPlateau``).
        metric_name: the evaluator metric that drives ``ReduceLROnPlateau``.
    """

    def __init__(
        self,
        lr_scheduler: LRScheduler | ReduceLROnPlateau | None,
        evaluator: Engine | None = None,
        metric_name: str | None = None,
    ) -> None:
        if isinstance(lr_scheduler, ReduceLROnPlateau) and (evaluator is None or metric_name is None):
            raise ValueError("ReduceLROnPlateau needs the evaluator and the metric_name that drives it.")
        self.lr_scheduler = lr_scheduler
        self.evaluator = evaluator
        self.metric_name = metric_name
        self._validated = False

    def attach(self, engine: Engine) -> None:
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.COMPLETED, self._mark_validated)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _mark_validated(self, _: Engine) -> None:
        self._validated = True

    def __call__(self, engine: Engine) -> None:
        if self.lr_scheduler is None:
            return
        if isinstance(self.lr_scheduler, ReduceLROnPlateau):
            if self._validated:
                self.lr_scheduler.step(float(self.evaluator.state.metrics[self.metric_name]))
        else:
            self.lr_scheduler.step()
        self._validated = False
