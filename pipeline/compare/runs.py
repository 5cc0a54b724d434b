"""Train and evaluate several bundles on the same data and split, each run a ``python -m monai.bundle`` command.

Every bundle is trained with the command the README gives (``run training --config_file bundles/<b>/train.json``)
and evaluated with ``run evaluating`` in a number of variants (plain, flip TTA, post-processing, both), so that a
comparison is exactly what a user would get by hand. Each command runs in its own process with its log in the run
folder; a run whose command has not changed since it last finished is reused, so an interrupted comparison
resumes where it stopped. A failed run is logged with the tail of its log and the others go on.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PLAIN", "RESERVED_ARGS", "RunResult", "default_variants", "run_bundle"]

logger = logging.getLogger("pipeline.compare")

PLAIN = "plain"
RESERVED_ARGS = (
    "--config_file",
    "--dataset_dir",
    "--output_dir",
    "--checkpoint",
    "--checkpoints",
    "--save_cases",
    "--flip_tta",
    "--fill_holes",
    "--keep_largest",
)
"""Arguments the comparison sets itself (paths, and the evaluation variants); forwarding them would make runs disagree
with the report."""

_COMMAND_FILE = "command.json"


def default_variants(keep_largest: int = 2) -> dict[str, list[str]]:
    """Evaluation variants: the name and the extra bundle arguments of each.

    Args:
        keep_largest: connected components kept by the post-processing variants.

    Returns:
        ``plain`` (none), ``tta`` (flip test-time augmentation), ``post`` (largest components + fill holes) and
        ``tta+post``.
    """
    post = ["--keep_largest", str(keep_largest), "--fill_holes", "true"]
    return {PLAIN: [], "tta": ["--flip_tta", "true"], "post": post, "tta+post": ["--flip_tta", "true", *post]}


@dataclass
class RunResult:
    """Where one bundle's training and evaluations went, and whether they worked.

    Attributes:
        bundle: the bundle's name (its folder under ``bundles/``).
        run_dir: the training output folder (``models/``, ``metrics.csv``, ``summary.json``, ``train.log``).
        evaluations: variant name -> evaluation folder (``per_image.csv``, ``summary.json``, ``cases/``), for the
            variants that finished.
        error: why the bundle failed, or ``None``.
    """

    bundle: str
    run_dir: Path
    evaluations: dict[str, Path]
    error: str | None = None


def _check_args(extra: Sequence[str]) -> None:
    for arg in extra:
        if arg.split("=", 1)[0] in RESERVED_ARGS:
            raise ValueError(
                f"{arg.split('=', 1)[0]} is set by the comparison itself; leave it out of the bundle args."
            )


def _up_to_date(folder: Path, command: list[str]) -> bool:
    try:
        return json.loads((folder / _COMMAND_FILE).read_text()) == command and (folder / "summary.json").is_file()
    except (OSError, json.JSONDecodeError):
        return False


def _execute(command: list[str], folder: Path, log_name: str, what: str) -> None:
    """Run ``command`` with its output in ``folder/log_name``; record the command only once it has finished."""
    if _up_to_date(folder, command):
        logger.info("%s: reusing the finished run in %s", what, folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _COMMAND_FILE).unlink(missing_ok=True)
    (folder / "summary.json").unlink(missing_ok=True)
    log = folder / log_name
    logger.info("%s: %s", what, " ".join(command[1:]))
    start = time.perf_counter()
    with log.open("w") as f:
        result = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env={**os.environ}, check=False)
    if result.returncode != 0 or not (folder / "summary.json").is_file():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{what} failed (exit code {result.returncode}); the end of {log}:\n{tail}")
    (folder / _COMMAND_FILE).write_text(json.dumps(command, indent=1) + "\n")
    logger.info("%s: done in %.0f s", what, time.perf_counter() - start)


def run_bundle(
    bundle: str,
    dataset_dir: str,
    output_dir: Path,
    bundle_args: Sequence[str] = (),
    variants: Mapping[str, Sequence[str]] | None = None,
    bundles_dir: str = "bundles",
) -> RunResult:
    """Train one bundle, then evaluate its best checkpoint in every variant.

    Args:
        bundle: the bundle's folder name under ``bundles_dir``.
        dataset_dir: the bundles' ``--dataset_dir`` (a folder or a datalist JSON).
        output_dir: the comparison's folder; the bundle's runs go to ``output_dir/runs/<bundle>``.
        bundle_args: further ``--key value`` arguments for every command (``--epochs 10``, ``--fold 0``, ...).
        variants: evaluation variants (see :func:`default_variants`).
        bundles_dir: where the bundles are, relative to the working directory (the repository root).

    Returns:
        The run's folders; ``error`` says what failed, if anything did.
    """
    _check_args(bundle_args)
    variants = default_variants() if variants is None else variants
    run_dir = Path(output_dir) / "runs" / bundle
    result = RunResult(bundle, run_dir, {})
    base = [sys.executable, "-m", "monai.bundle", "run"]
    config = Path(bundles_dir) / bundle
    try:
        train = [*base, "training", "--config_file", str(config / "train.json"), "--dataset_dir", dataset_dir]
        _execute([*train, "--output_dir", str(run_dir), *bundle_args], run_dir, "train.log", f"{bundle} training")
        checkpoint = run_dir / "models" / "model.pt"
        for name, args in variants.items():
            folder = run_dir / f"eval_{name.replace('+', '_')}"
            evaluate = [
                *base,
                "evaluating",
                "--config_file",
                str(config / "evaluate.json"),
                "--dataset_dir",
                dataset_dir,
            ]
            command = [*evaluate, "--output_dir", str(folder), "--checkpoint", str(checkpoint), "--save_cases", "true"]
            _execute([*command, *bundle_args, *args], folder, "evaluate.log", f"{bundle} evaluation ({name})")
            result.evaluations[name] = folder
    except RuntimeError as e:
        logger.error("%s", e)
        result.error = str(e).splitlines()[0]
    return result
