"""Train and evaluate several bundles on the same data and split, each run a ``python -m monai.bundle`` command.

Every bundle is trained with the command the README gives (``run training --config_file bundles/<b>/train.json``)
and evaluated with ``run evaluating`` in a number of variants (plain, flip TTA, post-processing, both), so that a
comparison is exactly what a user would get by hand. Each command runs in its own process with its log in the run
folder; a run whose command and inputs (data, configs, weights) have not changed since it last finished is reused,
so an interrupted comparison resumes where it stopped. A failed run is logged with the tail of its log and the others
go on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.inference.input_fit import EXIT_FLAGGED
from pipeline.overrides import RUN_ARGUMENTS, command_line_options, root_id
from pipeline.training.run_folders import latest_checkpoint, latest_link

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
    "--split",
)
"""Arguments the comparison sets itself (paths, the evaluated split and the evaluation variants); forwarding them
would make runs disagree with the report."""

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
        run_dir: the bundle's folder in the comparison: the training's output folder (``runs/``, ``latest``,
            ``train.log``) and the evaluations' folders.
        evaluations: variant name -> evaluation folder (``per_image.csv``, ``summary.json``, ``cases/``), for the
            variants that finished.
        error: why the bundle failed, or ``None``.
    """

    bundle: str
    run_dir: Path
    evaluations: dict[str, Path]
    error: str | None = None

    @property
    def training_dir(self) -> Path:
        """The finished training run (``models/``, ``metrics.csv``, ``summary.json``): ``run_dir/latest``."""
        return Path(latest_link(self.run_dir))


def _check_args(extra: Sequence[str]) -> None:
    for arg in extra:
        if not arg.startswith("--"):
            continue
        name = "--" + arg[2:].split("=", 1)[0].replace("-", "_")  # fire reads --flip-tta as --flip_tta
        if name in RESERVED_ARGS:
            raise ValueError(f"{name} is set by the comparison itself; leave it out of the bundle args.")


def _digest(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's listing (relative names, sizes, modification times)."""
    sha = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
    elif path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and not any(part.startswith(".") for part in child.relative_to(path).parts):
                stat = child.stat()
                sha.update(f"{child.relative_to(path)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    else:
        sha.update(b"missing")
    return sha.hexdigest()


def _up_to_date(folder: Path, record: dict, done: Path) -> bool:
    try:
        recorded = json.loads((folder / _COMMAND_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return recorded == record and done.exists()


def _execute(
    command: list[str],
    inputs: Sequence[Path],
    folder: Path,
    log_name: str,
    what: str,
    force: bool,
    done: Path | None = None,
) -> bool:
    """Run ``command`` with its output in ``folder/log_name``, unless the same command already finished there on the
    same inputs (the files and folders it reads: data, configs, weights). ``done`` (default ``folder/summary.json``;
    for a training, the ``latest`` link) is what a finished command leaves: it is removed before the command runs and
    must exist after. Returns whether it ran."""
    done = folder / "summary.json" if done is None else done

    def record() -> dict:
        return {"command": command, "inputs": {str(p): _digest(p) for p in inputs}}

    if not force and _up_to_date(folder, record(), done):
        logger.info("%s: reusing the finished run in %s", what, folder)
        return False
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _COMMAND_FILE).unlink(missing_ok=True)
    done.unlink(missing_ok=True)  # a link: only the pointer goes, the run it named stays
    log = folder / log_name
    logger.info("%s: %s", what, " ".join(command[1:]))
    start = time.perf_counter()
    with log.open("w") as f:
        result = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env={**os.environ}, check=False)
    if result.returncode not in (0, EXIT_FLAGGED) or not done.exists():  # flagged results are results
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{what} failed (exit code {result.returncode}); the end of {log}:\n{tail}")
    # digested after the run: a dataset the run generated (the demo data) counts as it is now
    (folder / _COMMAND_FILE).write_text(json.dumps(record(), indent=1) + "\n")
    logger.info("%s: done in %.0f s", what, time.perf_counter() - start)
    return True


def _args_for(config_file: Path, args: Sequence[str]) -> list[str]:
    """The options of ``args`` (with their values) whose id is one of ``config_file``'s top-level ids or an argument
    of MONAI's ``run``, in order."""
    ids = set(json.loads(config_file.read_text())) | RUN_ARGUMENTS  # MONAI's own (--tracking) go to every command
    return [token for name, group in command_line_options(args) if root_id(name) in ids for token in group]


def run_bundle(
    bundle: str,
    dataset_dir: str,
    output_dir: Path,
    bundle_args: Sequence[str] = (),
    variants: Mapping[str, Sequence[str]] | None = None,
    bundles_dir: str = "bundles",
    force: bool = False,
) -> RunResult:
    """Train one bundle, then evaluate its best checkpoint in every variant.

    A training or an evaluation is skipped when the same command finished in the same folder on the same inputs: the
    dataset (a datalist file's bytes, or a folder's file names, sizes and times), the bundle's configs and, for an
    evaluation, the weights file.

    Args:
        bundle: the bundle's folder name under ``bundles_dir``.
        dataset_dir: the bundles' ``--dataset_dir`` (a folder or a datalist JSON).
        output_dir: the comparison's folder; the bundle's runs go to ``output_dir/runs/<bundle>``.
        bundle_args: further ``--key value`` arguments (``--epochs 10``, ``--fold 0``, ...): all of them for the
            training, and those whose id the evaluation config has for each evaluation.
        variants: evaluation variants (see :func:`default_variants`).
        bundles_dir: where the bundles are, relative to the working directory (the repository root).
        force: run everything again, even what finished before.

    Returns:
        The run's folders; ``error`` says what failed, if anything did.

    Raises:
        ValueError: when ``bundle_args`` holds an argument the comparison sets itself (:data:`RESERVED_ARGS`).
    """
    _check_args(bundle_args)
    variants = default_variants() if variants is None else variants
    run_dir = Path(output_dir) / "runs" / bundle
    result = RunResult(bundle, run_dir, {})
    base = [sys.executable, "-m", "monai.bundle", "run"]
    config = Path(bundles_dir) / bundle  # the generated configs hold all the wiring they run
    try:
        train = [*base, "training", "--config_file", str(config / "train.json"), "--dataset_dir", dataset_dir]
        command = [*train, "--output_dir", str(run_dir), *bundle_args]
        inputs = [Path(dataset_dir), config / "train.json"]
        _execute(command, inputs, run_dir, "train.log", f"{bundle} training", force, done=result.training_dir)
        checkpoint = Path(latest_checkpoint(run_dir))
        inputs = [Path(dataset_dir), config / "evaluate.json", checkpoint]
        evaluate = [*base, "evaluating", "--config_file", str(config / "evaluate.json"), "--dataset_dir", dataset_dir]
        shared = _args_for(config / "evaluate.json", bundle_args)  # training's own (--epochs) would be refused
        for name, args in variants.items():
            folder = run_dir / f"eval_{name.replace('+', '_')}"
            command = [*evaluate, "--output_dir", str(folder), "--checkpoint", str(checkpoint), "--save_cases", "true"]
            what = f"{bundle} evaluation ({name})"
            _execute([*command, *shared, *args], inputs, folder, "evaluate.log", what, force)
            result.evaluations[name] = folder
    except RuntimeError as e:
        logger.error("%s", e)
        result.error = str(e).splitlines()[0]
    return result
