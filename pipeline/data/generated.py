"""Folders a generator writes whole: built in a temporary sibling, renamed into place, marked when finished.

The demo dataset and the demo DICOM study share this life cycle. The marker (a JSON file in the folder) records the
generator, its version and the generation parameters; a folder without it is never replaced, so a user's own data
at the same path is safe, and an interrupted run never leaves a folder that looks complete.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GeneratedFolder"]

logger = logging.getLogger(__name__)


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
    def build(self, root: Path, params: dict[str, object]) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Yield a temporary sibling folder and its marker dict; on success write the marker and move it to ``root``.

        ``root`` is checked before any work and again before the final rename. The caller may add entries to the
        marker (e.g. the list of files written). On an exception the temporary folder is deleted and ``root`` is
        left as it was.
        """
        self.check_replaceable(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        # mkdir (not mkdtemp, which is private to the user) so the finished folder gets the usual umask permissions.
        tmp = root.parent / f".{root.name}.partial-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        try:
            marker: dict[str, Any] = dict(params)
            yield tmp, marker
            marker.update(generator=self.generator, version=self.version)
            (tmp / self.marker_name).write_text(json.dumps(marker, indent=2) + "\n")
            self.check_replaceable(root)
            if root.exists():
                old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:12]}"
                os.replace(root, old)  # out of the way in one step, then deleted
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

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
