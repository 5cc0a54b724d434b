"""Files and folders that appear whole or not at all: the one home of atomic writing.

Every file the package writes (JSON reports, checkpoints, NIfTI, PNG, DICOM SEG, ``metrics.csv``, the ``latest``
link) goes through :func:`atomic_output`: it is written under a temporary name in the destination folder and moved
into place with ``os.replace``, so a reader never sees half a file and an interrupted run leaves the previous version
intact (reference.md section 6). Checkpoints are also synced to disk (:func:`save_atomic`). A series' outputs are
written into a temporary folder renamed into place when all of them are written (:func:`atomic_folder`); generated
folders (the demo dataset and DICOM study) likewise, with a marker that says they are finished
(:class:`GeneratedFolder`). A write that fails names the file and the operating system's reason (:func:`write_error`).
"""

from __future__ import annotations

import errno
import inspect
import json
import logging
import math
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "GeneratedFolder",
    "atomic_folder",
    "atomic_output",
    "interrupts_deferred",
    "save_atomic",
    "write_error",
    "write_json",
]

logger = logging.getLogger(__name__)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the platform allows it (not on Windows)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


@contextmanager
def atomic_output(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` in one step.

    The temporary name keeps ``path``'s suffixes (``.tmp-<pid>-name.nii.gz``), so writers that pick the format from
    the file name (nibabel, Pillow) still do the right thing. The parent folder is created when missing. On an
    exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the final file (or link).
        durable: also sync the file's bytes and the rename to disk before returning (checkpoints: a power cut then
            leaves the old or the new file, never an empty one).

    Yields:
        the temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.unlink(missing_ok=True)  # left by a killed process that had this pid
    try:
        yield tmp
        if durable:
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _sync_folder(path.parent)
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS:
            raise
        raise write_error(e, path) from e
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink(missing_ok=True)


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
"""The errors that only a write makes (a full disk first), which a message must name the file for; others (a source
that cannot be read inside the block, say) are raised as they are."""


@contextmanager
def atomic_folder(
    path: str | os.PathLike,
    before_replace: Callable[[Path], None] | None = None,
    keep: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it becomes ``path`` in one rename.

    An existing ``path`` (an earlier run's outputs) is moved aside, the new folder moved in, and only then the old one
    deleted, so ``path`` is missing only between two renames. On an exception (a full disk, an interrupt) the
    temporary folder is deleted and ``path`` is left as it was: a result that failed half-way never looks complete.

    Args:
        path: the folder to write.
        before_replace: called with ``path`` once the block has filled the folder, before anything is renamed; it
            may raise to leave ``path`` as it was.
        keep: when it holds for ``path`` by then, ``path`` is kept and the new folder discarded (another process
            finished the same folder meanwhile).

    Yields:
        the temporary folder (``.<name>.partial-<random>`` beside ``path``; made with ``mkdir``, so the finished folder
        gets the usual umask permissions).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:12]}")
    tmp.mkdir()
    try:
        yield tmp
        if before_replace is not None:
            before_replace(path)
        if keep is not None and keep(path):
            return
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:12]}")
        if path.exists():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if old.exists():
                os.replace(old, path)  # the earlier outputs back where they were
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_error(error: OSError, path: str | os.PathLike) -> OSError:
    """``error`` as an ``OSError`` that names ``path`` (the file that was being written, not its temporary name) and
    the operating system's reason, e.g. ``[Errno 28] No space left on device: 'outputs/.../model.pt'``."""
    if error.errno is None:
        return OSError(f"cannot write {path}: {error}")
    return OSError(error.errno, error.strerror or os.strerror(error.errno), os.fspath(path))


class _WriteErrors:
    """A file wrapper that keeps the ``OSError`` of a failed ``write``: ``torch.save`` reports it only as
    ``enforce fail at inline_container.cc ... unexpected pos``, with no file and no reason."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends, where they take effect: a checkpoint being written is
    finished first, so a run stopped at any moment after its first epoch has a complete checkpoint to resume from,
    and an output is recorded together with its files.

    The signals' Python handlers are swapped for ones that only note the first signal (a signal mask would not do:
    the kernel hands a process signal to any thread that does not block it); a second one acts at once. Only the main
    thread can swap them; elsewhere the block runs as it is (signals reach the main thread only).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    held = [sig for sig in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(sig))]
    previous: dict[int, Any] = {}

    def note(signum: int, frame: Any) -> None:
        if noted:  # a second signal: the user (or the scheduler) insists, stop now
            previous[signum](signum, frame)
        noted.append(signum)

    previous.update({sig: signal.signal(sig, note) for sig in held})
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if noted:
            previous[noted[0]](noted[0], None)  # the handler it would have met: KeyboardInterrupt, usually


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` so that ``path`` is never missing, partial or empty.

    The object is written through :func:`atomic_output` with ``durable=True``: a temporary file beside ``path``,
    synced to disk, then renamed over ``path`` (``os.replace``, atomic on POSIX and Windows), the rename synced too.
    Ctrl-C and SIGTERM wait until it is written (:func:`interrupts_deferred`).

    Args:
        obj: what to save (a state dict, or a dict of them).
        path: the destination file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: naming ``path`` and the reason (``No space left on device``...) when the file cannot be written;
            ``path`` is then left as it was.
    """
    import torch

    path = Path(path)
    with interrupts_deferred(), atomic_output(path, durable=True) as tmp, tmp.open("wb") as f:
        recording = _WriteErrors(f)
        try:
            torch.save(obj, recording)
        except RuntimeError as e:
            if recording.error is None:
                raise
            raise write_error(recording.error, path) from e
    return path


def _to_json(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, paths and tuples turned into JSON types; NaN and infinities -> None."""
    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return _to_json(value.tolist())
    if isinstance(value, np.generic):
        return _to_json(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically.

    Numpy scalars and arrays become numbers and lists, paths become strings, and non-finite floats (NaN, inf) become
    ``null``, so that the file is strict JSON that any parser accepts.

    Args:
        obj: a JSON-like structure (dicts, lists, numbers, strings), possibly holding numpy values.
        path: destination file.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    text = json.dumps(_to_json(obj), indent=2, allow_nan=False) + "\n"
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return path


@dataclass(frozen=True)
class GeneratedFolder:
    """The marker convention of one generator.

    Attributes:
        marker_name: file name of the completion marker inside the folder.
        generator: who wrote it (the generating module's name), recorded in the marker.
        version: generator version; a folder from another version counts as incomplete.
        what: how messages name the folder, e.g. ``"demo dataset"``.
    """

    marker_name: str
    generator: str
    version: int
    what: str

    def read_marker(self, root: Path) -> dict[str, Any] | None:
        """The marker written by this generator in ``root``, or None when there is none (or another's)."""
        try:
            recorded = json.loads((root / self.marker_name).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(recorded, dict) or recorded.get("generator") != self.generator:
            return None
        return recorded

    def matching_marker(self, root: Path, params: dict[str, object]) -> dict[str, Any] | None:
        """The marker when it comes from this version and records ``params``; None otherwise."""
        recorded = self.read_marker(root)
        if recorded is None or recorded.get("version") != self.version:
            return None
        if any(recorded.get(key) != value for key, value in params.items()):
            return None
        return recorded

    def check_replaceable(self, root: Path) -> None:
        """Raise ``FileExistsError`` unless ``root`` is absent, an empty folder or a folder this generator wrote."""
        if not root.exists() and not root.is_symlink():
            return
        if root.is_dir() and not root.is_symlink() and (not any(root.iterdir()) or self.read_marker(root) is not None):
            return
        raise FileExistsError(
            f"{root} exists and is not a {self.what} written by {self.generator}; refusing to replace it"
        )

    @contextmanager
    def build(
        self, root: Path, params: dict[str, object], is_complete: Callable[[Path], bool]
    ) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Yield a temporary sibling folder and its marker dict; on success write the marker and move it to ``root``.

        ``root`` is checked before any work and again before the final rename. The caller may add entries to the
        marker (e.g. the list of files written). On an exception the temporary folder is deleted and ``root`` is
        left as it was.

        The generators are deterministic, so when ``is_complete(root)`` holds by the end (another process finished
        the same folder meanwhile), that folder is kept and the new copy discarded: a process already reading it
        never sees it vanish. Another folder is moved aside, the new one moved in, and only then the old one deleted,
        so ``root`` is missing only between two renames.
        """
        self.check_replaceable(root)

        def finished_meanwhile(path: Path) -> bool:
            if is_complete(path):
                logger.info("Keeping the %s in %s that another process finished meanwhile", self.what, path)
                return True
            return False

        with atomic_folder(root, before_replace=self.check_replaceable, keep=finished_meanwhile) as tmp:
            marker: dict[str, Any] = dict(params)
            yield tmp, marker
            marker.update(generator=self.generator, version=self.version)
            (tmp / self.marker_name).write_text(json.dumps(marker, indent=2) + "\n")

    def ensure(
        self,
        root: str | os.PathLike,
        write: Callable[..., Path],
        is_complete: Callable[..., bool],
        kwargs: dict[str, object],
    ) -> Path:
        """Return ``root`` after calling ``write(root, **params)`` unless ``is_complete(root, **params)`` already.

        ``params`` are ``kwargs`` with ``write``'s defaults filling in the rest, so a folder made with other
        parameters is regenerated.

        Raises:
            TypeError: for a keyword ``write`` does not take.
            FileExistsError: ``root`` exists and was not written by this generator.
        """
        root = Path(root)
        defaults = {
            name: p.default
            for name, p in inspect.signature(write).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(f"unexpected keyword arguments for {write.__name__}(): {sorted(unknown)}")
        params = {**defaults, **kwargs}
        if is_complete(root, **params):
            logger.info("Reusing the %s in %s", self.what, root)
            return root
        if self.read_marker(root) is not None:
            logger.info("Regenerating the %s in %s: incomplete, older or made with other parameters", self.what, root)
        start = time.perf_counter()
        try:
            write(root, **params)
        except OSError:
            # Another process may have finished the same folder at the same time (the final rename then fails).
            if not is_complete(root, **params):
                raise
            logger.info("Reusing the %s in %s written by another process", self.what, root)
            return root
        logger.info("Generated the %s in %s in %.1f s", self.what, root, time.perf_counter() - start)
        return root
