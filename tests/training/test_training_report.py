"""TrainingReport's summary: the trivial predictors' scores, and a warning when the best model does not beat them."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ignite.engine import Engine, Events

from pipeline.training import TrainingReport, trivial_baselines
from pipeline.training.curves import write_curves


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


class _Boom(RuntimeError):
    pass


def _raise_at(epoch: int, error: BaseException):
    def handler(engine: Engine) -> None:
        if engine.state.epoch == epoch:
            raise error

    return handler


@pytest.mark.parametrize(
    "error, status",
    [(_Boom("disk on fire\nsecond line"), "failed"), (KeyboardInterrupt(), "interrupted")],
)
def test_a_failed_run_says_so(tmp_path, error, status):
    """The failure is recorded even with MONAI's CheckpointSaver (which re-raises on EXCEPTION_RAISED) after it."""
    from monai.handlers import CheckpointSaver

    trainer = Engine(lambda engine, batch: {"loss": 1.0})
    TrainingReport(tmp_path, progress_bar=False).attach(trainer)
    network = torch.nn.Linear(2, 1)
    CheckpointSaver(str(tmp_path / "models"), {"model": network}, save_final=True).attach(trainer)
    trainer.add_event_handler(Events.EPOCH_STARTED, _raise_at(2, error))
    with pytest.raises(type(error)):
        trainer.run([0, 0], max_epochs=3)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == status and summary["epochs_run"] == 1 and summary["stopped_early"] is False
    assert summary["error"] == f"{type(error).__name__}: {error}".splitlines()[0]
    assert summary["learned"] is None


def test_a_killed_run_leaves_the_last_epochs_summary(tmp_path):
    """summary.json is rewritten after every epoch: read it as a killed run would leave it, at the next epoch start."""
    seen = []
    trainer = Engine(lambda engine, batch: {"loss": 1.0})
    TrainingReport(tmp_path, progress_bar=False).attach(trainer)

    @trainer.on(Events.EPOCH_STARTED)
    def _read(engine: Engine) -> None:
        summary = json.loads((tmp_path / "summary.json").read_text())
        seen.append((summary["status"], summary["epochs_run"], len(summary["last"])))

    trainer.run([0, 0], max_epochs=3)
    assert seen == [("running", 0, 0), ("running", 1, 4), ("running", 2, 4)]  # last: epoch, loss, lr, seconds
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("max_epochs, stop_at, status", [(2, None, "finished"), (3, 1, "stopped_early")])
def test_finished_and_stopped_early(tmp_path, max_epochs, stop_at, status):
    trainer = Engine(lambda engine, batch: {"loss": 1.0})
    TrainingReport(tmp_path, progress_bar=False).attach(trainer)
    if stop_at is not None:
        trainer.add_event_handler(Events.EPOCH_COMPLETED(once=stop_at), lambda e: e.terminate())
    trainer.run([0, 0], max_epochs=max_epochs)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == status and summary["stopped_early"] is (status == "stopped_early")


@pytest.mark.parametrize(
    "interval, fail_at, drawn",
    [
        (0.0, None, [1, 2, 3]),
        (1e9, None, [1, 3]),  # the first epoch, then only the end of the run
        (1e9, 3, [1, 2]),  # a failed run draws what it has
        (1e9, 1, []),  # failed before any epoch ended: nothing to draw
    ],
)
def test_curves_are_redrawn_at_most_every_interval_and_at_the_end(tmp_path, monkeypatch, interval, fail_at, drawn):
    from pipeline.training import training_report

    rows: list[int] = []

    def recording(history, path, **kwargs):  # the real drawing, noting how many epochs each picture shows
        rows.append(len(history))
        return write_curves(history, path, **kwargs)

    monkeypatch.setattr(training_report, "write_curves", recording)
    trainer = Engine(lambda engine, batch: {"loss": 1.0})
    TrainingReport(tmp_path, progress_bar=False, curves_interval=interval).attach(trainer)
    if fail_at is not None:
        trainer.add_event_handler(Events.EPOCH_STARTED, _raise_at(fail_at, _Boom("out of memory")))
    try:
        trainer.run([0, 0], max_epochs=3)
    except _Boom:
        assert fail_at is not None
    assert rows == drawn
    assert (tmp_path / "curves.png").exists() is bool(drawn)
