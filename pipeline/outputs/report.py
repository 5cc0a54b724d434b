"""Numbers about a mask (voxels, volume, per-slice area) and atomic JSON files to keep them in.

Every writer in ``pipeline.outputs`` goes through ``atomic_output``: the file is written under a temporary name in
the destination folder and moved into place with ``os.replace``, so a reader never sees half a file and an
interrupted run leaves the previous version intact (reference.md section 6).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_output", "mask_measurements", "write_json"]


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` in one step.

    The temporary name keeps ``path``'s suffixes (``.tmp-<pid>-name.nii.gz``), so writers that pick the format from
    the file name (nibabel, Pillow) still do the right thing. The parent folder is created when missing. On an
    exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the final file.

    Yields:
        the temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def mask_measurements(mask: np.ndarray, spacing: Sequence[float]) -> dict[str, Any]:
    """Count, volume and per-slice area of a binary mask.

    Args:
        mask: (N, H, W) mask; non-zero voxels are foreground.
        spacing: (slice, row, column) spacing in mm, matching the mask axes.

    Returns:
        ``{"voxels": int, "volume_ml": float, "spacing_mm": [s, r, c], "per_slice": [{"index": k, "area_px": int,
        "area_mm2": float}, ...]}`` with one ``per_slice`` entry for each of the N slices, in array order.
        ``volume_ml = voxels * s * r * c / 1000`` and ``area_mm2 = area_px * r * c``.

    Raises:
        ValueError: ``mask`` is not 3D, or ``spacing`` is not three positive finite numbers.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must be (N, H, W), got shape {mask.shape}")
    spacing = [float(s) for s in spacing]
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive (slice, row, column) mm values, got {spacing}")
    areas = np.count_nonzero(mask, axis=(1, 2))
    pixel_mm2 = spacing[1] * spacing[2]
    voxels = int(areas.sum())
    return {
        "voxels": voxels,
        "volume_ml": voxels * spacing[0] * pixel_mm2 / 1000.0,
        "spacing_mm": spacing,
        "per_slice": [
            {"index": k, "area_px": int(area), "area_mm2": float(area) * pixel_mm2} for k, area in enumerate(areas)
        ],
    }


def _to_json(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, paths and tuples turned into JSON types; NaN and infinities -> None."""
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
