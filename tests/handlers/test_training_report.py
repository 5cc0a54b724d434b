"""TrainingReport's summary: the trivial predictors' scores, and a warning when the best model does not beat them."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ignite.engine import Engine, Events

from pipeline.handlers import TrainingReport, trivial_baselines


def _mask(fraction: float, size: int = 10) -> dict[str, torch.Tensor]:
    label = torch.zeros(1, size, size)
    label.view(-1)[: round(fraction * size * size)] = 1
    return {"label": label}


@pytest.mark.parametrize(
    "fractions, foreground, background",
    [
        ([0.78, 0.8], 0.79, 0.0),
        ([0.2, 0.0], 0.1, 0.0),  # an empty mask: all background is not scored on it, all foreground scores 0
        ([0.0], 0.0, math.nan),
        ([], math.nan, math.nan),
    ],
)
def test_trivial_baselines(fractions, foreground, background):
    scores = trivial_baselines([_mask(f) for f in fractions])
    assert scores["all_foreground"] == pytest.approx(foreground, nan_ok=True)
    assert scores["all_background"] == pytest.approx(background, nan_ok=True)


def _train(tmp_path, ious: list[float], baselines: dict[str, float]) -> dict:
    """Two engines as the bundle wires them: validation after every epoch reports the next IoU of ``ious``."""
    scores = iter(ious)
    evaluator = Engine(lambda engine, batch: None)
    evaluator.add_event_handler(Events.COMPLETED, lambda e: e.state.metrics.update(val_iou=next(scores)))
    trainer = Engine(lambda engine, batch: {"loss": 1.0})
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run([0]))
    TrainingReport(tmp_path, evaluator, progress_bar=False, baselines=baselines).attach(trainer)
    trainer.run([0, 0], max_epochs=len(ious))
    return json.loads((tmp_path / "summary.json").read_text())


@pytest.mark.parametrize(
    "ious, learned",
    [
        ([0.5, 0.779], False),  # the all-foreground solution of a 78 % foreground set
        ([0.5, 0.797], False),  # within the margin
        ([0.5, 0.85], True),
    ],
)
def test_summary_flags_a_model_that_learned_nothing(tmp_path, caplog, ious, learned):
    summary = _train(tmp_path, ious, {"all_foreground": 0.778, "all_background": 0.0})
    assert summary["baselines"] == {"val_iou_all_foreground": 0.778, "val_iou_all_background": 0.0}
    assert summary["learned"] is learned
    flagged = [r.message for r in caplog.records if "does not beat predicting all foreground (0.7780)" in r.message]
    assert bool(flagged) is not learned and len(summary["warnings"]) == (0 if learned else 1)


def test_no_baselines_no_verdict(tmp_path):
    summary = _train(tmp_path, [0.1], {})
    assert summary["learned"] is None and summary["warnings"] == [] and summary["baselines"] == {}
