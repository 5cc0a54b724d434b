"""Named learning-rate schedules: warm-up + cosine per step, plateau on the validation metric, restarts per epoch."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events

from pipeline.training import LrSchedule, WarmupCosineLR, create_lr_scheduler


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _run(schedule: str, scores: list[float], iterations: int = 1, **kwargs) -> list[float]:
    """Train for ``len(scores)`` epochs whose validation IoU is ``scores``; return the lr after each epoch."""
    optimizer = _optimizer()
    evaluator = Engine(lambda engine, batch: None)
    epoch_scores = iter(scores)

    @evaluator.on(Events.COMPLETED)
    def _score(engine: Engine) -> None:
        engine.state.metrics["val_iou"] = next(epoch_scores)

    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run([0]))  # what ValidationHandler does
    LrSchedule(create_lr_scheduler(schedule, optimizer, **kwargs), evaluator, "val_iou").attach(trainer)
    lrs: list[float] = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: lrs.append(optimizer.param_groups[0]["lr"]))
    trainer.run([0] * iterations, max_epochs=len(scores))
    return lrs


def test_plateau_halves_after_patience_epochs_without_improvement():
    lrs = _run("plateau", [0.5, 0.6, 0.6, 0.6, 0.6], plateau_patience=2)
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5]


@pytest.mark.parametrize("patience", ["20 samples", "10 steps", 2, "2 epochs"])
def test_plateau_patience_in_any_unit(patience):
    """10 samples in batches of 2 per epoch: 20 samples, 10 steps and 2 epochs are all two validations."""
    lrs = _run("plateau", [0.5, 0.6, 0.6, 0.6, 0.6], plateau_patience=patience, samples_per_epoch=10, batch_size=2)
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5]


def test_warmup_cosine_is_stepped_per_iteration():
    """3 epochs of 4 steps: warm-up over 4 steps (one epoch), then a cosine down to min_lr at the last step."""
    optimizer = _optimizer(lr=1.0)
    scheduler = create_lr_scheduler(
        "warmup_cosine", optimizer, epochs=3, samples_per_epoch=8, batch_size=2, warmup="8 samples", min_lr=0.0
    )
    assert isinstance(scheduler, WarmupCosineLR) and scheduler.total_steps == 12 and scheduler.warmup_steps == 4
    trainer = Engine(lambda engine, batch: None)
    LrSchedule(scheduler).attach(trainer)
    lrs: list[float] = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda _: lrs.append(optimizer.param_groups[0]["lr"]))
    trainer.run([0] * 4, max_epochs=3)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4:] == sorted(lrs[4:], reverse=True) and lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_plateau_keeps_lr_while_improving():
    assert _run("plateau", [0.1, 0.2, 0.3, 0.4], plateau_patience=1) == [1.0] * 4


def test_cosine_restarts_every_cycle():
    lrs = _run("cosine", [0.0] * 6, cosine_cycle=3, min_lr=0.0)
    assert lrs[2] == pytest.approx(1.0) and lrs[5] == pytest.approx(1.0)  # back to the start after each cycle
    assert lrs[0] < 1.0 and lrs[1] < lrs[0]


def test_constant_and_unknown():
    assert _run("constant", [0.1, 0.1]) == [1.0, 1.0]
    with pytest.raises(ValueError, match="plateau"):
        create_lr_scheduler("linear", _optimizer())


def test_plateau_needs_the_metric():
    with pytest.raises(ValueError, match="metric_name"):
        LrSchedule(create_lr_scheduler("plateau", _optimizer()), evaluator=None)
