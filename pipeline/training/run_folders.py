"""Run folders: every training run writes into a folder of its own, and ``latest`` names the last finished one.

Layout under a bundle's output folder (``outputs/<model>`` or ``--output_dir``)::

    runs/20261129-181502/     one training run: models/, logs/, metrics.csv, summary.json
    runs/20261129-190311/     the next one; nothing of the first is replaced
    latest -> runs/20261129-181502

``latest`` is a symbolic link, replaced atomically when a run finishes (or stops early), never by a run that failed
or is still going. Inference and evaluation read their default weights through it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from pipeline.atomic import atomic_output
from pipeline.bundle import flag
from pipeline.distributed import from_rank0

try:
    import fcntl
except ImportError:  # Windows: run folders are not locked
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DONE",
    "FAILED",
    "FINISHED",
    "INTERRUPTED",
    "LATEST",
    "LOCK_NAME",
    "RUNNING",
    "RUNS",
    "STOPPED_EARLY",
    "RunInUseError",
    "default_output_dir",
    "latest_checkpoint",
    "latest_link",
    "lock_run_dir",
    "new_run_dir",
    "open_run_dir",
    "point_latest",
    "resume_run_dir",
    "run_name",
    "unlock_run_dir",
]

logger = logging.getLogger(__name__)

RUNNING, FINISHED, STOPPED_EARLY, FAILED, INTERRUPTED = "running", "finished", "stopped_early", "failed", "interrupted"
"""A run's ``summary.json`` ``status``: ``running`` from the start and after every epoch, then one of the others."""
DONE = (FINISHED, STOPPED_EARLY)
"""Statuses of runs that ended normally: ``latest`` may point at them, and ``--resume`` leaves them alone."""

RUNS = "runs"
LATEST = "latest"


def new_run_dir(output_dir: str | os.PathLike, now: float | None = None) -> str:
    """Create and return a fresh run folder ``<output_dir>/runs/<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... if taken).

    Args:
        output_dir: the bundle's output folder.
        now: the time stamp to name the run by (seconds since the epoch); default: now.

    Returns:
        The new, empty folder, as a string (configs join it with ``+``).
    """
    runs = Path(output_dir) / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    for n in range(1, 10_000):
        run = runs / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run.mkdir()
        except FileExistsError:
            continue
        return str(run)
    raise FileExistsError(f"{runs} already holds 9,999 runs named {stamp}*")


def resume_run_dir(output_dir: str | os.PathLike, checkpoint_name: str = "checkpoint.pt") -> str:
    """The newest run under ``<output_dir>/runs`` that did not finish and saved a training state to continue from.

    A run is unfinished when its ``summary.json`` says ``running`` (it was killed), ``failed`` or ``interrupted``, or
    is missing or unreadable (killed while it started).

    Args:
        output_dir: the bundle's output folder.
        checkpoint_name: the training state a run folder must hold.

    Returns:
        The run folder, as a string.

    Raises:
        FileNotFoundError: when there is no such run; the message says what was found.
    """
    runs = Path(output_dir) / RUNS
    candidates = sorted(runs.iterdir(), key=lambda p: p.name, reverse=True) if runs.is_dir() else []
    finished = 0
    for run in candidates:
        try:
            status = json.loads((run / "summary.json").read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            status = None
        if status in DONE:
            finished += 1
        elif (run / checkpoint_name).is_file():
            return str(run)
    raise FileNotFoundError(
        f"--resume: no unfinished run with a saved training state in {runs} ({len(candidates)} run(s), {finished} "
        f"finished). Start a new run without --resume."
    )


def latest_link(output_dir: str | os.PathLike) -> str:
    """``<output_dir>/latest``: the link to the last finished run."""
    return str(Path(output_dir) / LATEST)


def latest_checkpoint(output_dir: str | os.PathLike, name: str = "model.pt") -> str:
    """The default weights for inference and evaluation: ``<output_dir>/latest/models/<name>``."""
    return str(Path(output_dir) / LATEST / "models" / name)


def point_latest(link: str | os.PathLike, run_dir: str | os.PathLike) -> Path:
    """Make ``link`` point at ``run_dir`` (relative, so the output folder can be moved), replacing it atomically.

    Args:
        link: the pointer, ``<output_dir>/latest``.
        run_dir: the finished run's folder.

    Returns:
        ``link`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: when ``link`` exists and is not a symbolic link (a folder from an older layout, say): it is
            left alone.
    """
    link = Path(link)
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a link to a run folder; move it away to publish new runs")
    target = os.path.relpath(Path(run_dir).resolve(), link.parent.resolve())
    with atomic_output(link) as tmp:
        tmp.symlink_to(target, target_is_directory=True)
    return link


def default_output_dir(model_name: str, fold: int | None = None) -> str:
    """A bundle's output folder when ``--output_dir`` is not given: ``outputs/<model>``, or ``outputs/<model>/fold<N>``
    for cross-validation (relative to the working directory)."""
    return f"outputs/{model_name}" + ("" if fold is None else f"/fold{fold}")


def open_run_dir(output_dir: str | os.PathLike, resume: object = False) -> str:
    """The training run's folder: a new one (:func:`new_run_dir`), or with ``resume`` the newest unfinished one
    (:func:`resume_run_dir`), locked for this process (:func:`lock_run_dir`). Process 0 chooses; every process of a
    ``torchrun`` gets its choice.

    Args:
        output_dir: the bundle's output folder.
        resume: the ``--resume`` setting (see :func:`pipeline.bundle.flag`).

    Raises:
        RunInUseError: ``--resume`` found a run that another process is still training.
    """
    if flag(resume, "resume"):
        return from_rank0(lambda: lock_run_dir(resume_run_dir(output_dir)))
    return from_rank0(lambda: lock_run_dir(new_run_dir(output_dir)))


class RunInUseError(RuntimeError):
    """A run folder is locked by another training process."""


LOCK_NAME = ".lock"
"""The lock file of a run folder, held (``flock``) by the process training in it, which it names."""

_HELD: dict[str, int] = {}  # run folder -> the open lock file, held until the process ends


def lock_run_dir(run_dir: str | os.PathLike) -> str:
    """Lock ``run_dir`` for this process until it ends, so that no second process trains into it.

    The lock is an exclusive ``flock`` on ``<run_dir>/.lock``, which the operating system releases when the process
    ends however it ends (a crash or ``kill -9`` leaves no stale lock). The file records the holder's process id
    and start time for the refusal message. Where ``flock`` does not exist (Windows), nothing is locked.

    Args:
        run_dir: the run folder.

    Returns:
        ``run_dir``, as a string.

    Raises:
        RunInUseError: another process holds it; the message gives that process and when it started.
    """
    key = os.path.realpath(run_dir)
    if fcntl is None or key in _HELD:
        return str(run_dir)
    fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode(errors="replace").strip() or "a process that recorded nothing"
        os.close(fd)
        raise RunInUseError(
            f"{run_dir} is being trained by another process ({holder}); two processes would write one run folder. "
            "Wait for it to end (or stop it) before --resume, or train a new run without --resume."
        ) from None
    except OSError as e:  # a file system without locks (some network mounts): train, unguarded, and say so
        os.close(fd)
        logger.warning("could not lock %s (%s): nothing stops a second process from training into it", run_dir, e)
        return str(run_dir)
    os.ftruncate(fd, 0)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    os.write(fd, f"process {os.getpid()}, started {started}".encode())
    _HELD[key] = fd
    return str(run_dir)


def unlock_run_dir(run_dir: str | os.PathLike) -> None:
    """Release this process's lock on ``run_dir`` (:func:`lock_run_dir`) when its training has ended; a process that
    goes on (a notebook) then no longer keeps the folder from a later ``--resume``. Nothing happens when it holds
    none."""
    fd = _HELD.pop(os.path.realpath(run_dir), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def run_name(run_dir: str | os.PathLike) -> str:
    """The name a tracker shows for a run: its folder's name (``20261129-181502``)."""
    return Path(run_dir).name
