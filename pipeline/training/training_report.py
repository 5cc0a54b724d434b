"""A training log a person can follow: one line per epoch, a metrics CSV, and a closing summary.

MONAI's ``StatsHandler`` logs per iteration and prints the trainer and the evaluator separately; this handler
puts one epoch on one line (loss, every validation metric, learning rate, time), appends the same row to
``metrics.csv``, and at the end says where the model, the TensorBoard logs and the metrics went. The summary also
states what the trivial predictors (all foreground, all background) score on the validation set, and warns when the
best model does not beat them clearly: a model stuck on "everything is foreground" otherwise looks like a success.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from pipeline.atomic import atomic_output
from pipeline.training.curves import write_curves
from pipeline.training.run_folders import DONE, FAILED, FINISHED, INTERRUPTED, RUNNING, STOPPED_EARLY, point_latest

__all__ = [
    "BASELINE_MARGIN",
    "FAILED",
    "FINISHED",
    "INTERRUPTED",
    "RUNNING",
    "STOPPED_EARLY",
    "TrainingReport",
    "trivial_baselines",
]

logger = logging.getLogger("pipeline.training")

BASELINE_MARGIN = 0.02
"""How much the best validation IoU must exceed the better trivial predictor's for the run not to be flagged."""


def trivial_baselines(items: Iterable[Mapping], label_key: str = "label") -> dict[str, float]:
    """Mean IoU over validation images of predicting every pixel foreground, and every pixel background.

    Computed as the validation IoU is (per image at its native size, then averaged). One structure (a ``(1, H, W)``
    mask): all foreground scores the foreground fraction of each mask; all background scores 0 on a mask with
    foreground and is left out of the mean on an empty one, as MONAI's ``MeanIoU`` leaves out an empty prediction of
    an empty mask. Several structures (a one-hot ``(K + 1, H, W)`` label, background first; the mean over structures
    of each image): "all foreground" predicts each structure everywhere in turn, scoring its share of the image (0
    where it is absent); "all background" scores 1 for each absent structure (nothing to find, nothing found) and 0
    for each present one.

    Args:
        items: the validation items, each with a ``label`` as above.
        label_key: key of the mask.

    Returns:
        ``{"all_foreground": iou, "all_background": iou}``; NaN when there is no item to average.
    """
    foreground, background = [], []
    for item in items:
        label = torch.as_tensor(item[label_key]) > 0
        if label.shape[0] > 1:  # one-hot: channel 0 is the background
            shares = label[1:].flatten(1).float().mean(dim=1)
            foreground.append(shares.mean().item())
            background.append((shares == 0).float().mean().item())
            continue
        fraction = label.float().mean().item()
        foreground.append(fraction)
        if fraction > 0:
            background.append(0.0)
    return {"all_foreground": _mean(foreground), "all_background": _mean(background)}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


class TrainingReport:
    """Per-epoch line, ``metrics.csv``, ``summary.json`` and ``curves.png`` for a supervised training run.

    ``summary.json`` is written atomically when the run starts and after every epoch with ``status`` ``running``, and
    at the end with ``finished``, ``stopped_early``, ``failed`` or ``interrupted`` (and the error), so a killed run
    still describes itself.

    Attach it to the trainer after MONAI's ``ValidationHandler`` (each epoch's validation has run when it reports) and
    before the checkpoint savers: ignite calls only the first ``EXCEPTION_RAISED`` handler that re-raises, and this
    one must record the failure. The closing summary registers itself when the run starts, after every other
    handler, so that the final checkpoint exists when it is listed.

    Args:
        output_dir: the run's output folder; ``metrics.csv`` and ``summary.json`` are written there, and the summary
            lists the checkpoints found in ``output_dir/models`` and the TensorBoard folder ``output_dir/logs``.
        evaluator: the validation engine whose metrics are reported.
        optimizer: the optimizer whose learning rate is reported.
        key_metric: the evaluator metric that selects the best model.
        progress_bar: show an iteration progress bar (ignite's ``ProgressBar``, with the loss and images/s); default:
            only when stderr is a terminal. Otherwise (a batch job, ``nohup``) a progress line is logged at most every
            ``progress_interval`` seconds within an epoch.
        progress_interval: seconds between progress lines when there is no progress bar.
        curves_interval: least seconds between two drawings of ``curves.png`` after an epoch (drawing takes about
            0.5 s on a CPU, 3 % of a 17-second epoch); the first epoch and the end of the run, whatever its status,
            are always drawn. ``metrics.csv`` and ``summary.json`` are written after every epoch.
        run_name: what the summary calls the run (the model name).
        baselines: the key metric of trivial predictors on the validation set (:func:`trivial_baselines`), reported in
            the summary; the run is flagged when its best model does not beat the better one by
            :data:`BASELINE_MARGIN`.
        latest_link: a link (``<output folder>/latest``) pointed at ``output_dir`` when the run finishes or stops
            early (:func:`pipeline.training.run_folders.point_latest`); never for a failed run.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        evaluator: Engine | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        key_metric: str = "val_iou",
        progress_bar: bool | None = None,
        progress_interval: float = 30.0,
        curves_interval: float = 30.0,
        run_name: str = "model",
        baselines: Mapping[str, float] | None = None,
        latest_link: str | os.PathLike | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.latest_link = latest_link
        self.evaluator = evaluator
        self.optimizer = optimizer
        self.key_metric = key_metric
        self.progress_bar = sys.stderr.isatty() if progress_bar is None else progress_bar
        self.progress_interval = progress_interval
        self.curves_interval = curves_interval
        self._curves_at = -math.inf
        self._curves_rows = 0  # rows of the history that curves.png shows
        self._images = 0
        self._last_line = 0.0
        self.run_name = run_name
        self.baselines = dict(baselines) if baselines else {}
        self.history: list[dict[str, float]] = []
        self._val_metrics: dict[str, float] | None = None
        self._val_seconds = 0.0
        self._loss_sum = 0.0
        self._loss_count = 0
        self._start = self._epoch_start = 0.0
        self._elapsed_before = 0.0  # wall time of the run before it was resumed

    def state_dict(self) -> dict:
        """The epochs so far and the wall time spent on them, for a resumed run to continue."""
        return {"history": [dict(row) for row in self.history], "wall_time_s": self._wall_time()}

    def load_state_dict(self, state: Mapping) -> None:
        self.history = [dict(row) for row in state["history"]]
        self._curves_rows = 0
        self._elapsed_before = float(state["wall_time_s"])

    def _wall_time(self) -> float:
        return self._elapsed_before + (time.perf_counter() - self._start if self._start else 0.0)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._failed)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.STARTED, self._validation_started)
            self.evaluator.add_event_handler(Events.COMPLETED, self._validation_completed)
        if self.progress_bar:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=False).attach(
                engine, output_transform=lambda output: {"loss": self._loss(output), "img/s": self._speed()}
            )

    @staticmethod
    def _loss(output: object) -> float:
        if isinstance(output, list):  # MONAI decollates the batch: every item carries the batch loss
            output = output[0]
        loss = output["loss"] if isinstance(output, dict) else output
        return float(loss.item() if isinstance(loss, torch.Tensor) else loss)

    def _started(self, engine: Engine) -> None:
        if not engine.has_event_handler(self._completed, Events.COMPLETED):  # after the savers' COMPLETED handlers
            engine.add_event_handler(Events.COMPLETED, self._completed)
        self._start = time.perf_counter()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        logger.info(
            "training %s: %d training batches per epoch, up to %d epochs; outputs in %s",
            self.run_name,
            engine.state.epoch_length,
            engine.state.max_epochs,
            self.output_dir,
        )
        self._write_summary(engine, RUNNING)

    def _epoch_started(self, _: Engine) -> None:
        self._epoch_start = self._last_line = time.perf_counter()
        self._loss_sum, self._loss_count, self._images = 0.0, 0, 0
        self._val_metrics, self._val_seconds = None, 0.0

    def _speed(self) -> float:
        """Training images per second so far in this epoch."""
        return self._images / max(time.perf_counter() - self._epoch_start, 1e-9)

    @staticmethod
    def _batch_size(engine: Engine) -> int:
        batch, output = engine.state.batch, engine.state.output
        if isinstance(batch, dict) and isinstance(batch.get("image"), torch.Tensor):
            return int(batch["image"].shape[0])
        return len(output) if isinstance(output, list) else 1

    def _iteration_completed(self, engine: Engine) -> None:
        self._loss_sum += self._loss(engine.state.output)
        self._loss_count += 1
        self._images += self._batch_size(engine)
        now = time.perf_counter()
        if self.progress_bar or now - self._last_line < self.progress_interval:
            return
        self._last_line = now
        done, total = (
            engine.state.iteration - (engine.state.epoch - 1) * engine.state.epoch_length,
            engine.state.epoch_length,
        )
        left = (now - self._epoch_start) / max(done, 1) * (total - done)
        logger.info(
            "epoch %d/%d  iteration %d/%d  loss %s  %.1f images/s  %.0f s left in this epoch",
            engine.state.epoch,
            engine.state.max_epochs,
            done,
            total,
            _fmt(self._loss_sum / self._loss_count),
            self._speed(),
            left,
        )

    def _validation_started(self, _: Engine) -> None:
        self._val_start = time.perf_counter()

    def _validation_completed(self, evaluator: Engine) -> None:
        self._val_seconds = time.perf_counter() - self._val_start
        self._val_metrics = {k: float(v) for k, v in evaluator.state.metrics.items() if isinstance(v, (int, float))}

    def _epoch_completed(self, engine: Engine) -> None:
        seconds = time.perf_counter() - self._epoch_start
        row: dict[str, float] = {
            "epoch": engine.state.epoch,
            "loss": self._loss_sum / max(self._loss_count, 1),
            "lr": self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else float("nan"),
        }
        if self._val_metrics is not None:
            row.update(self._val_metrics)
        row["seconds"] = seconds
        self.history.append(row)
        metrics = "  ".join(f"{k} {_fmt(v)}" for k, v in (self._val_metrics or {}).items())
        logger.info(
            "epoch %d/%d  loss %s  %s  lr %.1e  %.1f s%s",
            engine.state.epoch,
            engine.state.max_epochs,
            _fmt(row["loss"]),
            metrics,
            row["lr"],
            seconds,
            f" (validation {self._val_seconds:.1f} s)" if self._val_metrics is not None else "",
        )
        self._write_csv()
        self._draw_curves(final=False)
        self._write_summary(engine, RUNNING)

    def _draw_curves(self, final: bool) -> None:
        """Redraw ``curves.png`` when it lacks rows and, unless ``final``, ``curves_interval`` has passed."""
        now = time.perf_counter()
        if len(self.history) == self._curves_rows or (not final and now - self._curves_at < self.curves_interval):
            return
        write_curves(self.history, self.output_dir / "curves.png", title=self.run_name)
        self._curves_at, self._curves_rows = now, len(self.history)

    def _write_csv(self) -> None:
        columns: list[str] = []
        for row in self.history:
            columns += [k for k in row if k not in columns]
        with atomic_output(self.output_dir / "metrics.csv") as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.history)

    def best(self) -> dict[str, float] | None:
        """The epoch row with the highest key metric, or ``None`` before any validation."""
        scored = [r for r in self.history if not math.isnan(r.get(self.key_metric, float("nan")))]
        return max(scored, key=lambda r: r[self.key_metric]) if scored else None

    def _check_baselines(self, best: dict[str, float] | None) -> str | None:
        """A warning when the best model does not beat the better trivial predictor by BASELINE_MARGIN."""
        scores = {k: v for k, v in self.baselines.items() if not math.isnan(v)}
        if best is None or not scores:
            return None
        name, score = max(scores.items(), key=lambda kv: kv[1])
        if best[self.key_metric] >= score + BASELINE_MARGIN:
            return None
        return (
            f"the best model ({self.key_metric} {best[self.key_metric]:.4f}, epoch {int(best['epoch'])}) does not beat "
            f"predicting {name.replace('_', ' ')} ({score:.4f}) by {BASELINE_MARGIN}: it has learned little. Train "
            "longer or at another learning rate, and check the masks and the --modality setting."
        )

    def _summary(self, engine: Engine, status: str) -> dict:
        best, last = self.best(), (self.history[-1] if self.history else {})
        network = getattr(engine, "network", None)  # MONAI's SupervisedTrainer keeps its network
        logs = self.output_dir / "logs"
        summary = {
            "model": self.run_name,
            "status": status,
            "epochs_run": len(self.history),
            "max_epochs": engine.state.max_epochs,
            "stopped_early": status == STOPPED_EARLY,
            "wall_time_s": round(self._wall_time(), 1),
            "num_parameters": sum(p.numel() for p in network.parameters()) if network is not None else None,
            "key_metric": self.key_metric,
            "best": best,
            "last": last,
            "baselines": {f"{self.key_metric}_{name}": value for name, value in self.baselines.items()},
            "learned": None,
            "warnings": [],
            "checkpoints": sorted(str(p) for p in (self.output_dir / "models").glob("*.pt")),
            "tensorboard": str(logs) if logs.is_dir() else None,
            "metrics_csv": str(self.output_dir / "metrics.csv"),
        }
        if status in DONE:
            warning = self._check_baselines(best)
            if warning is not None:
                summary["learned"] = False
                summary["warnings"].append(warning)
            elif best is not None and self.baselines:
                summary["learned"] = True
        return summary

    def _write_summary(self, engine: Engine, status: str, **extra: object) -> dict:
        """Write ``summary.json`` atomically: a killed run leaves the previous epoch's complete summary.

        A resumed run that has not got its history back (its state failed to load, or it is stopped before) leaves the
        run's summary as it was, adding a failure or interruption to its ``events``: an attempt that did nothing
        never rewrites a run's record to ``epochs_run 0``."""
        previous = self._previous_summary() if not self.history else None
        if previous is not None:
            if status in (FAILED, INTERRUPTED):
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                previous["events"] = [*previous.get("events", []), {"time": when, "status": status, **extra}]
                with atomic_output(self.output_dir / "summary.json") as tmp:
                    tmp.write_text(json.dumps(previous, indent=2, allow_nan=True) + "\n")
            return previous
        summary = {**self._summary(engine, status), **extra}
        with atomic_output(self.output_dir / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n")
        return summary

    def _previous_summary(self) -> dict | None:
        """The run folder's summary when an earlier attempt ran epochs (``epochs_run`` above 0), else None."""
        try:
            previous = json.loads((self.output_dir / "summary.json").read_text())
        except (OSError, ValueError):
            return None
        return previous if isinstance(previous, dict) and previous.get("epochs_run") else None

    def _failed(self, engine: Engine, error: BaseException) -> None:
        status = INTERRUPTED if isinstance(error, KeyboardInterrupt) else FAILED
        self._write_summary(engine, status, error=f"{type(error).__name__}: {error}".splitlines()[0])
        try:  # after the summary: a second Ctrl-C while drawing loses only the picture
            self._draw_curves(final=True)
        except Exception as e:  # the run's own error is the one to report
            logger.warning("could not draw %s: %s", self.output_dir / "curves.png", e)
        raise error  # ignite re-raises only when no handler is attached to EXCEPTION_RAISED

    def _completed(self, engine: Engine) -> None:
        stopped_early = engine.state.epoch < engine.state.max_epochs
        self._draw_curves(final=True)
        summary = self._write_summary(engine, STOPPED_EARLY if stopped_early else FINISHED)
        if self.latest_link is not None:
            try:
                point_latest(self.latest_link, self.output_dir)
            except OSError as e:  # a file system without symbolic links, or a folder in the way: the run is intact
                logger.warning(
                    "could not point %s at this run (%s); its weights are in %s: pass --checkpoint explicitly",
                    self.latest_link,
                    e,
                    self.output_dir / "models",
                )
        for warning in summary["warnings"]:
            logger.warning("%s", warning)
        best, wall = summary["best"], summary["wall_time_s"]
        lines = [
            f"finished {self.run_name}: {engine.state.epoch} epoch(s) in {wall:.0f} s"
            + (" (stopped early)" if stopped_early else ""),
        ]
        if best is not None:
            others = "  ".join(f"{k} {_fmt(v)}" for k, v in best.items() if k.startswith("val_"))
            lines.append(f"  best epoch {int(best['epoch'])}: {others}")
        lines += [f"  checkpoint:  {m}" for m in summary["checkpoints"]]
        if self.latest_link is not None:
            lines.append(f"  latest run:  {self.latest_link} -> {self.output_dir}")
        if summary["tensorboard"] is not None:
            logs = summary["tensorboard"]
            lines.append(f"  TensorBoard: {logs}  (tensorboard --logdir {logs})")
        lines.append(f"  metrics:     {self.output_dir / 'metrics.csv'}, {self.output_dir / 'summary.json'}")
        lines.append(f"  curves:      {self.output_dir / 'curves.png'}")
        logger.info("\n".join(lines))
