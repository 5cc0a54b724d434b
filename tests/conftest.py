"""Helpers every test folder shares: a bundle workflow built as `monai.bundle run` builds it, tiny and on the CPU;
and how the suite runs in parallel (pytest-xdist, ``-n auto`` in pyproject.toml) on a machine of a few cores.

Each xdist worker gets an equal share of the CPUs for torch and for the processes its tests start (two workers that
each use every core wait on each other's threads), and the longest tests start first, so that none of them runs
alone at the end. ``python -m pytest -m "not slow"`` is the quick tier for the edit loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
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
def skip_unless_installed() -> Callable[[Sequence[str], str, str], None]:
    """``check(missing, what, variable)``: with nothing ``missing``, nothing; else skip ``what`` naming what is missing
    (Debian packages, Python packages), or fail it when the environment ``variable`` is ``1``, as CI sets it, so that
    a test of a real system part never silently skips there."""

    def check(missing: Sequence[str], what: str, variable: str) -> None:
        if not missing:
            return
        reason = f"{what}: " + "; ".join(missing)
        if os.environ.get(variable) == "1":
            pytest.fail(f"{reason}, and {variable}=1 requires them")
        pytest.skip(reason)

    return check


@pytest.fixture(scope="session")
def bundle_workflow() -> Callable[..., ConfigWorkflow]:
    """``bundle_workflow(kind, bundle="unet", **overrides)``: the bundle's ``train``, ``evaluate`` or ``inference``
    workflow, not yet initialized; training starts from :data:`TINY_TRAINING`, the others on the CPU."""
    return _workflow


@pytest.fixture(scope="session")
def run_bundle() -> Callable[..., ConfigWorkflow]:
    """``run_bundle(kind, bundle="unet", **overrides)``: :func:`bundle_workflow`, initialized and run."""
    return _run


# ---------------------------------------------------------------------------------------------------------------------
# Running the suite in parallel


MAX_WORKERS = 4
"""The most xdist workers ``-n auto`` starts: the longest test alone takes about 2 minutes, and every worker holds
its own torch and MONAI in memory, so more workers than this gain little on a large machine."""
SLOW_LIMIT_S = 30.0
"""A test outside the ``slow`` marker should take at most this long (setup and teardown included)."""
LONGEST_FIRST = ("test_small_data.py", "test_compare.py", "test_distributed.py", "test_benchmarks_smoke.py")
"""Modules of the longest slow tests (over 20 s each), started first in this order; the other slow tests follow."""


def _cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker per CPU this process may use (not per physical core), at most :data:`MAX_WORKERS`."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own setting decides
    return min(_cpus(), MAX_WORKERS)


def pytest_configure(config: pytest.Config) -> None:
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:  # an xdist worker: its share of the CPUs, for torch here and for the processes tests start
        share = str(max(1, _cpus() // int(workers)))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, share)  # a value the caller set wins
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _start_order(item: pytest.Item) -> tuple[int, int]:
    if item.get_closest_marker("slow") is None:
        return (1, 0)
    name = item.path.name
    return (0, LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first, the longest of them first; otherwise the collection order (the sort is stable).

    xdist queues one more test on a worker than the one it runs: a short one behind the longest test, so that no long
    test waits for it while the other workers run out of work.
    """
    items.sort(key=_start_order)
    short = next((i for i, item in enumerate(items) if item.get_closest_marker("slow") is None), None)
    if short is not None and short > 1:
        items.insert(1, items.pop(short))


_durations: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "slow" not in report.keywords:
        _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Name the tests outside the ``slow`` marker that took over :data:`SLOW_LIMIT_S` (a warning, never a failure:
    a busy machine slows every test)."""
    over = sorted(((s, n) for n, s in _durations.items() if s > SLOW_LIMIT_S), reverse=True)
    if over:
        terminalreporter.section(f"tests outside the slow marker that took over {SLOW_LIMIT_S:.0f} s")
        for seconds, nodeid in over:
            terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}")
        terminalreporter.write_line("make them faster, or mark them @pytest.mark.slow")
