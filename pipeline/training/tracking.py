"""What MONAI's ``--tracking mlflow`` leaves out of the MLflow run: the run's settings, and its best model with card.

MONAI's ``MLFlowHandler`` (added to ``train#handlers`` by ``--tracking mlflow``) records the training loss at every
iteration, the validation metrics at every epoch, and the resolved config. :class:`TrackingExtras` adds the learning
rate at every epoch (``learning_rate``, the value ``metrics.csv`` reports) and, in the same MLflow run when the
training completes, the settings as parameters (the recipe's hyperparameters and the model card's settings,
flattened; no path), the best model twice: as an MLflow model named ``model`` (:func:`log_mlflow_model`) and as the
plain weights ``weights/model.pt`` with their card ``weights/model.json``; then ``curves.png``, ``metrics.csv`` and the
resolved config. MONAI writes that config to ``<output_dir>/config_<time>.json`` but, when ``--output_dir`` is given
as a plain path, cannot name it to its handler; it is found here by its time, copied into the run folder as
``config.json`` with its paths blanked (:func:`without_paths`) and logged. Without an MLflow handler on the trainer
this handler does nothing.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from torch import nn

from pipeline.atomic import write_json

__all__ = ["EXAMPLE_BATCH", "TrackingExtras", "flatten_params", "log_mlflow_model", "tracking_uri", "without_paths"]

logger = logging.getLogger("pipeline.training")

_ARTIFACTS = {"models/model.pt": "weights", "models/model.json": "weights", "curves.png": "", "metrics.csv": ""}
EXAMPLE_BATCH = 2
"""Images in the MLflow model's input example. ``torch.export`` fixes a dimension whose example size is 1, so a batch
of two leaves the logged model's batch size free; height and width stay fixed at the training size."""


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


def without_paths(value: Any) -> Any:
    """``value`` (a config, nested dicts and lists) with every plain string that names a file or folder, absolute or
    existing, replaced by ``"<path>"``: a dataset folder's name may be a patient's, and the config goes to MLflow.
    Expressions and references (``$...``, ``@...``, ``%...``) are kept: they are the bundle's own wiring."""
    if isinstance(value, dict):
        return {key: without_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_paths(item) for item in value]
    plain = isinstance(value, str) and not value.startswith(("$", "@", "%"))
    if plain and (os.path.isabs(value) or (("/" in value or os.sep in value) and os.path.exists(value))):
        return "<path>"
    return value


def _mlflow_handler(engine: Engine) -> Any:
    """The ``MLFlowHandler`` attached to ``engine`` (through its STARTED handler), or ``None``."""
    from monai.handlers import MLFlowHandler

    for handler, *_ in engine._event_handlers.get(Events.STARTED, []):
        owner = getattr(handler, "__self__", None)
        if isinstance(owner, MLFlowHandler):
            return owner
    return None


@contextmanager
def _fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (which ``mlflow.pytorch.log_model`` uses) at ``uri`` for the block only.

    MONAI's handler works through its own ``MlflowClient`` and leaves the process-wide tracking URI alone; so does this:
    the URI and the ``MLFLOW_TRACKING_URI`` variable (which ``mlflow.set_tracking_uri`` also sets) are put back after.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    variable = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if variable is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = variable


def log_mlflow_model(
    client: Any,
    run_id: str,
    network: nn.Module,
    weights: str | os.PathLike,
    in_channels: int,
    spatial_size: Sequence[int],
    registered_model_name: str | None = None,
) -> Any:
    """Log the weights in ``weights`` as the MLflow model ``model`` of the run ``run_id`` (PyTorch flavour).

    A copy of ``network`` on the CPU, in eval mode, gets the weights (read with ``weights_only=True``, as every loader
    of this project reads them) and is logged with ``mlflow.pytorch.log_model`` in MLflow's ``pt2`` format: the graph
    that ``torch.export`` traces, which ``mlflow.pytorch.load_model`` loads without unpickling code and without this
    package installed. (The ``pickle`` format would pickle the module, which MLflow refuses to load unless
    ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is set, and which needs ``pipeline`` importable to load.) The loaded model
    returns the logits for a float32 ``(B, in_channels, H, W)`` batch at the training size ``spatial_size``, any ``B``.

    The model carries a signature (``infer_signature`` on the input example and its logits: ``(-1, C, H, W)`` float32
    in and ``(-1, out_channels, H, W)`` out), the input example (:data:`EXAMPLE_BATCH` zero images: no patient data),
    the model card beside ``weights`` as ``extra_files/model.json``, and ``torch`` as its one pinned pip requirement
    (given, so that MLflow does not infer requirements by loading the model in a subprocess).

    Args:
        client: the ``MlflowClient`` of the run (MONAI's ``MLFlowHandler.client``); its tracking URI is used.
        run_id: the MLflow run that the model belongs to.
        network: the trained network (on any device, possibly inside ``DistributedDataParallel``); left untouched.
        weights: the state dict to log (the run's best model, ``models/model.pt``).
        in_channels: input channels ``C``.
        spatial_size: the training input size ``[H, W]``.
        registered_model_name: also register the model under this name (a new version of it), or ``None``.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri``, ``registered_model_version``...).
    """
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    from pipeline.distributed import unwrap
    from pipeline.models import card_path, load_state_dict_file

    # contiguous: torch.export warns when it saves channels-last weights ("No complete tensor found")
    model = copy.deepcopy(unwrap(network)).to("cpu", torch.float32, memory_format=torch.contiguous_format)
    model = load_state_dict_file(model, weights).eval()
    example = np.zeros((EXAMPLE_BATCH, in_channels, *spatial_size), dtype=np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(example)).numpy()
    run = client.get_run(run_id)
    # The logged model is created here, in the run's experiment: without an active run, MLflow would put it in the
    # default experiment, where runs:/<run_id>/model does not look for it.
    logged = client.create_logged_model(
        run.info.experiment_id, name="model", source_run_id=run_id, params=dict(run.data.params)
    )
    card = card_path(weights)
    with _fluent_tracking_uri(client.tracking_uri):
        return mlflow.pytorch.log_model(
            model,
            name="model",
            run_id=run_id,
            model_id=logged.model_id,
            serialization_format="pt2",
            signature=infer_signature(example, logits),
            input_example=example,
            extra_files=[str(card)] if card.is_file() else None,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            registered_model_name=registered_model_name,
        )


class TrackingExtras:
    """Record a training run's settings and best model in the MLflow run of MONAI's ``MLFlowHandler``.

    Attach it before the MLflow handler (anywhere in ``train#handlers``: ``--tracking`` appends that one at the end):
    it runs at ``COMPLETED``, after the checkpoint savers and before MLflow closes the run.

    Args:
        run_dir: the run folder, whose best model and figures are logged.
        params: the settings to record, by name (nested dicts are flattened with dots).
        output_dir: the bundle's output folder, where MONAI's ``--tracking`` writes the resolved config.
        settings: the model card's settings, recorded as ``settings.<name>``; its ``in_channels`` and ``spatial_size``
            shape the MLflow model's input.
        data: the training data fingerprint, recorded as ``data.<name>``.
        network: the trained network, logged with the best weights as an MLflow model (:func:`log_mlflow_model`);
            ``None`` logs the weights file only.
        registered_model_name: register the MLflow model under this name in MLflow's model registry (each run adds a
            version); ``None`` registers nothing.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        params: Mapping[str, Any] | None = None,
        output_dir: str | None = None,
        settings: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        network: nn.Module | None = None,
        registered_model_name: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.params = dict(params or {})
        if settings is not None:
            self.params["settings"] = dict(settings)
        if data is not None:
            self.params["data"] = dict(data)
        self.output_dir = Path(output_dir) if output_dir else None
        self.network = network
        self.registered_model_name = registered_model_name or None
        self._created = time.time()

    def _config(self) -> Path | None:
        """The config MONAI exported for this command: the newest ``config_*.json`` written before this handler."""
        if self.output_dir is None:
            return None
        written = [p for p in self.output_dir.glob("config_*.json") if p.stat().st_mtime <= self._created + 1]
        newest = max(written, key=lambda p: p.stat().st_mtime, default=None)
        if newest is None or newest.stat().st_mtime < self._created - 3600:
            return None
        copied = self.run_dir / "config.json"
        try:
            config = json.loads(newest.read_text())
        except (OSError, ValueError):
            return None
        write_json(without_paths(config), copied)
        return copied

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
        self._log_model(tracker.client, run_id)
        for relative, folder in _ARTIFACTS.items():
            path = self.run_dir / relative
            if path.is_file():
                tracker.client.log_artifact(run_id, str(path), artifact_path=folder or None)
        config = self._config()
        if config is not None:
            tracker.client.log_artifact(run_id, str(config))
        logger.info("MLflow run %s: settings and best model recorded (%s)", run_id, tracker.client.tracking_uri)

    def _log_model(self, client: Any, run_id: str) -> None:
        """The best model as an MLflow model; a warning, not a failed run, when it cannot be logged."""
        weights = self.run_dir / "models" / "model.pt"
        settings = self.params.get("settings", {})
        if self.network is None or not weights.is_file():
            return
        if "in_channels" not in settings or "spatial_size" not in settings:
            logger.warning("MLflow run %s: no in_channels and spatial_size in the settings, no MLflow model", run_id)
            return
        try:
            info = log_mlflow_model(
                client,
                run_id,
                self.network,
                weights,
                in_channels=int(settings["in_channels"]),
                spatial_size=[int(n) for n in settings["spatial_size"]],
                registered_model_name=self.registered_model_name,
            )
        except Exception as e:  # the training is done and its weights are kept; an export failure must not undo that
            logger.warning("MLflow run %s: the best model was not logged as an MLflow model: %s", run_id, e)
            return
        version = info.registered_model_version
        registered = f", registered as {self.registered_model_name} version {version}" if version else ""
        logger.info("MLflow run %s: best model logged as runs:/%s/model%s", run_id, run_id, registered)


def tracking_uri(run_dir: str | os.PathLike) -> str:
    """MLflow's store for a run when ``--tracking_uri`` is not given: an SQLite file in the run folder."""
    from monai.utils import path_to_sqlite_uri

    return path_to_sqlite_uri(str(Path(run_dir) / "mlruns.db"))
