"""Learning-rate schedules chosen by name, and the handler that steps them.

The default is a linear warm-up followed by a cosine decay to ``min_lr`` at the last optimizer step, stepped every
iteration: how far the decay has gone depends on the fraction of the run done, not on the dataset size. The seeds used
two others: reduce-on-plateau of the validation metric (CE-Net, U-Net) and cosine annealing with warm restarts for
snapshot ensembles (Inception U-Net), both stepped once per epoch. MONAI's ``LrScheduleHandler`` steps a scheduler on
the engine it is attached to, so these would need different engines in the config; :class:`LrSchedule` takes any of
them and steps each at the right moment.
"""

from __future__ import annotations

import logging
import math

import torch
from ignite.engine import Engine, Events
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, LambdaLR, LRScheduler, ReduceLROnPlateau

from pipeline.training.amount import Amount, validation_rounds

__all__ = ["LR_SCHEDULES", "LrSchedule", "WarmupCosineLR", "create_lr_scheduler", "snapshot_interval"]

logger = logging.getLogger(__name__)

LR_SCHEDULES = ("warmup_cosine", "plateau", "cosine", "constant")


class WarmupCosineLR(LambdaLR):
    """Linear warm-up from ``lr / warmup_steps`` to ``lr``, then a cosine decay to ``min_lr`` at ``total_steps``.

    Stepped once per optimizer step (:class:`LrSchedule` does that for it).

    Args:
        optimizer: the optimizer; its learning rate is the peak.
        total_steps: optimizer steps in the whole run (epochs x steps per epoch).
        warmup_steps: steps of linear warm-up. Default 0.
        min_lr: learning rate reached at the last step. Default 0.
    """

    per_iteration = True

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0):
        if total_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps} and {warmup_steps}.")
        self.total_steps = total_steps
        self.warmup_steps = min(warmup_steps, total_steps)
        peaks = [group["lr"] for group in optimizer.param_groups]
        floors = [min(min_lr / peak, 1.0) if peak > 0 else 0.0 for peak in peaks]
        super().__init__(optimizer, [lambda step, floor=floor: self._factor(step, floor) for floor in floors])

    def _factor(self, step: int, floor: float) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def create_lr_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    epochs: int = 1,
    samples_per_epoch: int = 1,
    batch_size: int = 1,
    warmup: str | float | Amount = 0,
    plateau_patience: str | float | Amount = 5,
    val_interval: int = 1,
    plateau_factor: float = 0.5,
    cosine_cycle: int = 10,
    min_lr: float = 1e-6,
) -> LRScheduler | ReduceLROnPlateau | None:
    """Build a learning-rate scheduler by name, with its lengths given as amounts of training.

    Args:
        name: ``"warmup_cosine"`` (linear warm-up, then cosine decay over the whole run, stepped per iteration),
            ``"plateau"`` (reduce when the validation key metric stops improving; it is maximised),
            ``"cosine"`` (cosine annealing with warm restarts every ``cosine_cycle`` epochs, the snapshot recipe)
            or ``"constant"`` (no scheduler).
        optimizer: the optimizer whose learning rate is scheduled.
        epochs: epochs in the run (``warmup_cosine`` decays over all of them).
        samples_per_epoch: training samples per epoch.
        batch_size: training batch size.
        warmup: linear warm-up (``warmup_cosine``), e.g. ``"500 samples"``; see :class:`~pipeline.training.Amount`.
        plateau_patience: training without a better validation metric before ``plateau`` reduces the rate, e.g.
            ``"5 epochs"`` or ``"1000 samples"``; counted in validations, at least one.
        val_interval: epochs between validations.
        plateau_factor: factor applied to the learning rate on a plateau. Default 0.5.
        cosine_cycle: length in epochs of each cosine cycle. Default 10.
        min_lr: floor of the learning rate. Default 1e-6.

    Returns:
        The scheduler, or ``None`` for ``"constant"``.

    Raises:
        ValueError: for an unknown ``name`` or an amount that cannot be read.
    """
    if name == "warmup_cosine":
        total_steps = epochs * math.ceil(samples_per_epoch / batch_size)
        warmup_steps = Amount.parse(warmup).steps(samples_per_epoch, batch_size)
        return WarmupCosineLR(optimizer, total_steps=total_steps, warmup_steps=warmup_steps, min_lr=min_lr)
    if name == "plateau":
        patience = validation_rounds(plateau_patience, samples_per_epoch, batch_size, val_interval)
        return ReduceLROnPlateau(optimizer, mode="max", factor=plateau_factor, patience=patience, min_lr=min_lr)
    if name == "cosine":
        return CosineAnnealingWarmRestarts(optimizer, T_0=cosine_cycle, eta_min=min_lr)
    if name == "constant":
        return None
    raise ValueError(f"unknown lr schedule {name!r}; choose one of {LR_SCHEDULES}.")


class LrSchedule:
    """Step a learning-rate scheduler when it expects it.

    A scheduler with ``per_iteration = True`` (:class:`WarmupCosineLR`) is stepped after every optimizer step. A
    ``ReduceLROnPlateau`` is stepped with the evaluator's ``metric_name`` at the end of the epochs when validation ran.
    Any other scheduler is stepped once per epoch. Attach it to the trainer after MONAI's ``ValidationHandler``, so
    that the metric is the current epoch's.

    After each epoch (after its own step) it sets ``engine.state.learning_rate`` to the optimizer's learning rate, the
    value ``metrics.csv`` reports, for the handlers that log state attributes (TensorBoard's ``state_attributes``, the
    MLflow extras).

    Args:
        lr_scheduler: the scheduler, or ``None`` for a constant learning rate.
        evaluator: the validation engine (needed for ``ReduceLROnPlateau``).
        metric_name: the evaluator metric that drives ``ReduceLROnPlateau``.
        optimizer: the optimizer whose learning rate is recorded; default the scheduler's.
        epochs: the epochs it steps the scheduler in; after them it leaves the learning rate alone (the Dice
            fine-tuning, :class:`~pipeline.training.DiceFineTuning`, holds its own). Default: every epoch.
    """

    def __init__(
        self,
        lr_scheduler: LRScheduler | ReduceLROnPlateau | None,
        evaluator: Engine | None = None,
        metric_name: str | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        epochs: int | None = None,
    ) -> None:
        if isinstance(lr_scheduler, ReduceLROnPlateau) and (evaluator is None or metric_name is None):
            raise ValueError("ReduceLROnPlateau needs the evaluator and the metric_name that drives it.")
        self.lr_scheduler = lr_scheduler
        self.evaluator = evaluator
        self.metric_name = metric_name
        self.optimizer = optimizer if optimizer is not None else getattr(lr_scheduler, "optimizer", None)
        self.epochs = epochs
        self._validated = False

    def _scheduling(self, engine: Engine) -> bool:
        return self.lr_scheduler is not None and (self.epochs is None or engine.state.epoch <= self.epochs)

    def attach(self, engine: Engine) -> None:
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.COMPLETED, self._mark_validated)
        if getattr(self.lr_scheduler, "per_iteration", False):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._step)
        else:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._record)

    def _record(self, engine: Engine) -> None:
        if self.optimizer is not None:
            engine.state.learning_rate = float(self.optimizer.param_groups[0]["lr"])

    def _mark_validated(self, _: Engine) -> None:
        self._validated = True

    def _step(self, engine: Engine) -> None:
        if self._scheduling(engine):
            self.lr_scheduler.step()

    def __call__(self, engine: Engine) -> None:
        if not self._scheduling(engine):
            self._validated = False
            return
        if isinstance(self.lr_scheduler, ReduceLROnPlateau):
            if self._validated:
                self.lr_scheduler.step(float(self.evaluator.state.metrics[self.metric_name]))
        else:
            self.lr_scheduler.step()
        self._validated = False


def snapshot_interval(lr_schedule: str, cosine_cycle: int) -> int:
    """Epochs between the snapshot models of a run: one at the end of every cycle of the ``cosine`` schedule (the
    Inception U-Net recipe's snapshot ensemble), none (0) for the other schedules."""
    return int(cosine_cycle) if lr_schedule == "cosine" else 0
