"""What MONAI's ``--tracking mlflow`` leaves out of the MLflow run: the run's settings, and its best model with card.

MONAI's ``MLFlowHandler`` (added to ``train#handlers`` by ``--tracking mlflow``) records the training loss at every
iteration, the validation metrics at every epoch, and the resolved config. :class:`TrackingExtras` adds the learning
rate at every epoch (``learning_rate``, the value ``metrics.csv`` reports) and, in the same MLflow run when the
training completes, the settings as parameters (the recipe's hyperparameters and the model card's
settings, flattened; no path), the best model (``models/model.pt`` with its card ``model.json``), ``curves.png``,
``metrics.csv`` and the resolved config. MONAI writes that config to ``<output_dir>/config_<time>.json`` but, when
``--output_dir`` is given as a plain path, cannot name it to its handler; it is found here by its time, copied into the
run folder as ``config.json`` and logged. Without an MLflow handler on the trainer this handler does nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["TrackingExtras", "flatten_params", "tracking_uri"]

logger = logging.getLogger("pipeline.training")

_ARTIFACTS = {"models/model.pt": "model", "models/model.json": "model", "curves.png": "", "metrics.csv": ""}


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"segment": {"label": "Lung"}}`` -> ``{"segment.label": "Lung"}``; lists and numbers as JSON text."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten_params(value, f"{name}.")
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


def _mlflow_handler(engine: Engine) -> Any:
    """The ``MLFlowHandler`` attached to ``engine`` (through its STARTED handler), or ``None``."""
    from monai.handlers import MLFlowHandler

    for handler, *_ in engine._event_handlers.get(Events.STARTED, []):
        owner = getattr(handler, "__self__", None)
        if isinstance(owner, MLFlowHandler):
            return owner
    return None


class TrackingExtras:
    """Record a training run's settings and best model in the MLflow run of MONAI's ``MLFlowHandler``.

    Attach it before the MLflow handler (anywhere in ``train#handlers``: ``--tracking`` appends that one at the end):
    it runs at ``COMPLETED``, after the checkpoint savers and before MLflow closes the run.

    Args:
        run_dir: the run folder, whose best model and figures are logged.
        params: the settings to record, by name (nested dicts are flattened with dots).
        output_dir: the bundle's output folder, where MONAI's ``--tracking`` writes the resolved config.
        settings: the model card's settings, recorded as ``settings.<name>``.
        data: the training data fingerprint, recorded as ``data.<name>``.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        params: Mapping[str, Any] | None = None,
        output_dir: str | None = None,
        settings: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.params = dict(params or {})
        if settings is not None:
            self.params["settings"] = dict(settings)
        if data is not None:
            self.params["data"] = dict(data)
        self.output_dir = Path(output_dir) if output_dir else None
        self._created = time.time()

    def _config(self) -> Path | None:
        """The config MONAI exported for this command: the newest ``config_*.json`` written before this handler."""
        if self.output_dir is None:
            return None
        written = [p for p in self.output_dir.glob("config_*.json") if p.stat().st_mtime <= self._created + 1]
        newest = max(written, key=lambda p: p.stat().st_mtime, default=None)
        if newest is None or newest.stat().st_mtime < self._created - 3600:
            return None
        copy = self.run_dir / "config.json"
        shutil.copyfile(newest, copy)
        return copy

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._learning_rate)
        engine.add_event_handler(Events.COMPLETED, self._record)

    def _learning_rate(self, engine: Engine) -> None:
        """Log ``engine.state.learning_rate`` (set by :class:`~pipeline.training.LrSchedule`) for this epoch."""
        tracker = _mlflow_handler(engine)
        value = getattr(engine.state, "learning_rate", None)
        if tracker is not None and tracker.cur_run is not None and value is not None:
            tracker.client.log_metric(tracker.cur_run.info.run_id, "learning_rate", value, step=engine.state.epoch)

    def _record(self, engine: Engine) -> None:
        tracker = _mlflow_handler(engine)
        if tracker is None or tracker.cur_run is None:
            return
        run_id = tracker.cur_run.info.run_id
        logged = tracker.client.get_run(run_id).data.params
        for name, value in flatten_params(self.params).items():
            if name not in logged:
                tracker.client.log_param(run_id, name, value[:6000])  # MLflow's limit on a parameter value
        for relative, folder in _ARTIFACTS.items():
            path = self.run_dir / relative
            if path.is_file():
                tracker.client.log_artifact(run_id, str(path), artifact_path=folder or None)
        config = self._config()
        if config is not None:
            tracker.client.log_artifact(run_id, str(config))
        logger.info("MLflow run %s: settings and best model recorded (%s)", run_id, tracker.client.tracking_uri)


def tracking_uri(run_dir: str | os.PathLike) -> str:
    """MLflow's store for a run when ``--tracking_uri`` is not given: an SQLite file in the run folder."""
    from monai.utils import path_to_sqlite_uri

    return path_to_sqlite_uri(str(Path(run_dir) / "mlruns.db"))
