"""Helpers every test folder shares: a bundle workflow built as `monai.bundle run` builds it, tiny and on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[1]
TINY_TRAINING = {"epochs": 1, "batch_size": 2, "spatial_size": [64, 64], "device": "cpu", "num_workers": 0}
"""Training settings of the tests' runs: one epoch of batch 2 at 64 x 64 on the CPU, data read in the main process."""
_RUN_IDS = {"train": "training", "evaluate": "evaluating", "inference": "inference"}


def _workflow(kind: str, bundle: str = "unet", **overrides: Any) -> ConfigWorkflow:
    settings = ({**TINY_TRAINING} if kind == "train" else {"device": "cpu"}) | overrides
    return ConfigWorkflow(
        config_file=str(REPO / "bundles" / bundle / f"{kind}.json"),
        workflow_type="train" if kind == "train" else "infer",
        run_id=_RUN_IDS[kind],
        logging_file=False,
        **settings,
    )


def _run(kind: str, bundle: str = "unet", **overrides: Any) -> ConfigWorkflow:
    workflow = _workflow(kind, bundle, **overrides)
    workflow.initialize()
    workflow.run()
    return workflow


@pytest.fixture(scope="session")
def bundle_workflow() -> Callable[..., ConfigWorkflow]:
    """``bundle_workflow(kind, bundle="unet", **overrides)``: the bundle's ``train``, ``evaluate`` or ``inference``
    workflow, not yet initialized; training starts from :data:`TINY_TRAINING`, the others on the CPU."""
    return _workflow


@pytest.fixture(scope="session")
def run_bundle() -> Callable[..., ConfigWorkflow]:
    """``run_bundle(kind, bundle="unet", **overrides)``: :func:`bundle_workflow`, initialized and run."""
    return _run
