"""Stop training at the first non-finite loss, before it reaches the weights.

With Adam, one NaN loss turns every weight into NaN and training carries on, reporting NaN until the end; the final
checkpoint is then useless. This handler checks the loss right after it is computed, before ``backward`` and the
optimizer step, and raises, so the weights are the last finite ones, the best ``model.pt`` is kept, and the run's
``summary.json`` says it failed and why.
"""

from __future__ import annotations

import math

from ignite.engine import Engine
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys

__all__ = ["NonFiniteLossError", "StopOnNonFiniteLoss"]


class NonFiniteLossError(FloatingPointError):
    """The training loss was NaN or infinite; the message says at which epoch and iteration."""


class StopOnNonFiniteLoss:
    """Raise :class:`NonFiniteLossError` when a training iteration's loss is NaN or infinite.

    Attach to a MONAI ``SupervisedTrainer`` (it fires ``IterationEvents.LOSS_COMPLETED`` between the loss and the
    backward pass). Usual causes: a learning rate that is too high, images with NaN values that the pre-flight
    check was told to ignore, or fp16 overflow without a grad scaler.
    """

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = float(engine.state.output[CommonKeys.LOSS].detach())
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss} at epoch {engine.state.epoch}, iteration {engine.state.iteration}; stopped "
                "before the optimizer step, so the weights and model_final.pt are the last finite ones (model.pt "
                "holds the best validated weights). Try a lower --learning_rate or check the data."
            )
