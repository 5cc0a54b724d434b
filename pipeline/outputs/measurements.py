"""Numbers about a mask: voxels, volume and per-slice area, as ``report.json`` gives them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.segments import Structure, structures_from_config

__all__ = ["mask_measurements"]


def mask_measurements(
    mask: np.ndarray,
    spacing: Sequence[float],
    structures: Sequence[Structure | Mapping[str, Any]] | None = None,
    slice_thickness: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Count, volume and per-slice area of a mask or label map.

    Args:
        mask: (N, H, W) mask; non-zero voxels are foreground (any structure).
        spacing: (slice, row, column) spacing in mm, matching the mask axes.
        structures: what the label values stand for; with several, each structure's ``voxels`` and ``volume_ml``
            are added under ``"structures"``, in their order.
        slice_thickness: each slice's own thickness in mm (N values) for a series of non-uniform spacing
            (:attr:`~pipeline.io.SeriesVolume.slice_thickness`); volumes then sum each slice's area times its
            thickness instead of using ``spacing[0]``.

    Returns:
        ``{"voxels": int, "volume_ml": float, "spacing_mm": [s, r, c], "per_slice": [{"index": k, "area_px": int,
        "area_mm2": float}, ...]}`` with one ``per_slice`` entry for each of the N slices, in array order.
        ``volume_ml = voxels * s * r * c / 1000`` (each slice's own thickness instead of ``s`` when given) and
        ``area_mm2 = area_px * r * c``.

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
    if slice_thickness is None:
        thickness = np.full(mask.shape[0], spacing[0])
    else:
        thickness = np.asarray(slice_thickness, dtype=np.float64)
        if thickness.shape != (mask.shape[0],) or not np.all(np.isfinite(thickness) & (thickness > 0)):
            raise ValueError(f"slice_thickness must be {mask.shape[0]} positive mm values, got {thickness.shape}")

    def volume_ml(per_slice: np.ndarray) -> float:
        return float(per_slice @ thickness) * pixel_mm2 / 1000.0

    out: dict[str, Any] = {
        "voxels": voxels,
        "volume_ml": volume_ml(areas),
        "spacing_mm": spacing,
        "per_slice": [
            {"index": k, "area_px": int(area), "area_mm2": float(area) * pixel_mm2} for k, area in enumerate(areas)
        ],
    }
    if structures is not None and len(structures) > 1:
        out["structures"] = []
        for structure in structures_from_config(structures):
            per_slice = np.count_nonzero(mask == structure.value, axis=(1, 2))
            out["structures"].append(
                {
                    "value": structure.value,
                    "label": structure.label,
                    "voxels": int(per_slice.sum()),
                    "volume_ml": volume_ml(per_slice),
                }
            )
    return out
