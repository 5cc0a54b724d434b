"""2D medical image segmentation on MONAI, laid out as the life of a model.

========================  ===============================================================================
``pipeline.io``           reading pixels: 2D slices, DICOM series and volumes
``pipeline.transforms``   array transforms and their dictionary wrappers; mask clean-up
``pipeline.networks``     CE-Net, the ASPP encoder-decoder, Inception U-Net: blocks, encoders, nets
``pipeline.intake``       datalists, splits, dataset recipes, the pre-flight check, the training cache
``pipeline.training``     handlers, schedules, checkpoints, resume, run folders, training reports
``pipeline.inference``    inputs, batched prediction, ensembles and flip TTA, the runner, :class:`Segmenter`
``pipeline.outputs``      DICOM SEG, NIfTI, overlays, measurements, the writers of an inference run
``pipeline.evaluation``   HD95, evaluation reports, the comparison of bundles
``pipeline.models``       weights formats and loading, model cards, export, packaging
``pipeline.demo``         the synthetic phantom and the demo data
``pipeline.pacs``         DICOMweb: studies from a PACS into inference, and its results back
========================  ===============================================================================

Beside them, on the ground floor: :mod:`pipeline.atomic` (writing files whole), :mod:`pipeline.bundle` (the bundle
configs' helpers), :mod:`pipeline.distributed`, :mod:`pipeline.errors`, :mod:`pipeline.segments` (what a model
segments) and :mod:`pipeline.version`.

The subpackages are imported when first used (``pipeline.training`` after ``import pipeline``), so that a bundle
config's ``"$import pipeline"`` reaches every one of them, and a command imports only what it needs.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from pipeline.version import __version__


def _no_telemetry() -> None:
    """No network at run time: MLflow, which ``monai.bundle`` imports when the tracking extra is installed, sends
    usage telemetry unless told not to. Tell it (a user's own ``MLFLOW_DISABLE_TELEMETRY`` wins), and when MLflow was
    imported first, as under ``python -m monai.bundle``, have it read the setting again, which drops its client."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    telemetry = sys.modules.get("mlflow.telemetry")
    if telemetry is not None:
        telemetry.set_telemetry_client()


_no_telemetry()

if TYPE_CHECKING:
    from pipeline.inference.segmenter import Segmenter

SUBPACKAGES = (
    "atomic",
    "bundle",
    "demo",
    "distributed",
    "errors",
    "evaluation",
    "inference",
    "intake",
    "io",
    "models",
    "networks",
    "outputs",
    "pacs",
    "segments",
    "training",
    "transforms",
    "version",
)
"""The modules and packages that ``pipeline.<name>`` reaches without an import of its own."""

__all__ = ["SUBPACKAGES", "Segmenter", "__version__", *SUBPACKAGES]


def __getattr__(name: str) -> Any:
    """Import a subpackage (or :class:`Segmenter`) on first use: PEP 562."""
    if name == "Segmenter":
        return importlib.import_module("pipeline.inference.segmenter").Segmenter
    if name in SUBPACKAGES:
        return importlib.import_module(f"pipeline.{name}")
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
