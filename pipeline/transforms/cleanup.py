"""Mask clean-up after thresholding: per slice with MONAI's transforms, and per series in 3D.

Two lungs are two components; a 2D model trained on single slices also marks air outside the body (the scanner
table, bowel gas), which are smaller components. :func:`mask_cleanup` builds the optional per-slice steps (largest
components, hole filling) from two settings, so that a bundle config switches them with
``--keep_largest 2 --fill_holes true``.

In a series these are separate 3D connected components, far smaller than a lung. :class:`VolumeCleanup` keeps the
``keep_largest`` largest 26-connected components (two lungs), drops any component under ``min_volume_ml`` or under
``min_fraction`` of the largest (when the lungs touch they are one component, and the second largest is then the
stomach gas: on the real two-series study in ``../shared/data/dicom`` it holds 0.7 % of the lung volume), and fills
holes slice by slice (vessels that the model left out of the lung). It reports what it removed, so that a report can
show the volume before and after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import AsDiscreted, FillHolesd, KeepLargestConnectedComponentd, MapTransform
from scipy import ndimage

from pipeline.bundle import flag

__all__ = ["VolumeCleanup", "fill_slice_holes", "mask_cleanup"]

_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connected: slices are thick, lungs join across them diagonally
_IN_SLICE_CROSS = np.zeros((3, 3, 3), dtype=bool)
_IN_SLICE_CROSS[1] = ndimage.generate_binary_structure(2, 1)  # 4-connected within a slice, never across slices
_SLAB_BYTES = 1 << 23  # the int64 copy ``np.bincount`` makes of one slab in ``_counts``: small enough to be reused


def mask_cleanup(
    keys: KeysCollection = "pred",
    keep_largest: int = 0,
    fill_holes: bool | str = False,
    structures: Sequence[int | Any] | None = None,
) -> list[MapTransform]:
    """The clean-up transforms for the masks under ``keys``, in order; empty when both are off.

    One structure: binary ``(1, H, W)`` masks, cleaned as they are. Several: one-hot ``(K + 1, H, W)`` masks
    (background first), turned into a label map, cleaned structure by structure (each keeps its own largest
    components; a hole is background that one structure encloses, so a structure inside another, such as the left
    ventricle's cavity inside its wall, is never filled over) and turned back into one-hot masks.

    Args:
        keys: keys of the masks (channel first).
        keep_largest: keep this many largest connected components of each structure (8-connected in 2D);
            0 keeps everything.
        fill_holes: fill background regions that a structure encloses completely (a bool, or the ``--fill_holes``
            setting as typed: :func:`pipeline.bundle.flag`).
        structures: what the masks hold (label values or structures); ``None`` or one: binary masks.

    Returns:
        The steps: ``[KeepLargestConnectedComponentd, FillHolesd]`` (each only when switched on), between an argmax
        and a one-hot ``AsDiscreted`` for several structures.

    Raises:
        ValueError: ``keep_largest`` is negative.
    """
    if keep_largest < 0:
        raise ValueError(f"keep_largest must be 0 (off) or a positive number of components, got {keep_largest}")
    count = len(structures) if structures else 1
    labels = list(range(1, count + 1))
    steps: list[MapTransform] = []
    if keep_largest:
        steps.append(
            KeepLargestConnectedComponentd(
                keys, applied_labels=labels, is_onehot=False, independent=True, num_components=keep_largest
            )
        )
    if flag(fill_holes, "fill_holes"):
        steps.append(FillHolesd(keys, applied_labels=labels))
    if steps and count > 1:
        steps = [AsDiscreted(keys, argmax=True), *steps, AsDiscreted(keys, to_onehot=count + 1)]
    return steps


def fill_slice_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of every slice of a stack: the same result as ``scipy.ndimage.binary_fill_holes`` per slice.

    A hole is background that no 4-connected background path joins to the slice's border. One labelling of the
    whole stack's background (connected within slices only) finds them, instead of one iterated dilation per slice:
    on a 30-slice 512 x 512 series this takes a fraction of the per-slice time.

    Args:
        mask: (N, H, W) mask; non-zero is foreground.

    Returns:
        (N, H, W) bool mask with every slice's holes filled.
    """
    mask = np.asarray(mask) > 0
    if mask.ndim != 3:
        raise ValueError(f"mask must be (N, H, W), got shape {mask.shape}")
    if not mask.size:
        return mask
    labels, count = _label(~mask, _IN_SLICE_CROSS)
    reaches_border = np.zeros(count + 1, dtype=bool)
    reaches_border[0] = True  # label 0 is the foreground itself
    for edge in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        reaches_border[np.unique(edge)] = True
    return mask | ~reaches_border[labels]


@dataclass(frozen=True)
class VolumeCleanup:
    """Post-processing of a series' (N, H, W) mask or label map, with the voxel spacing in mm.

    Attributes:
        keep_largest: keep this many largest 3D connected components; 0 keeps all.
        min_volume_ml: drop components smaller than this; 0 keeps all.
        min_fraction: drop components smaller than this fraction of the largest one; 0 keeps all.
        fill_holes: fill enclosed background in each slice (a bool, or an on/off setting as typed:
            :func:`pipeline.bundle.flag`).
    """

    keep_largest: int = 0
    min_volume_ml: float = 0.0
    min_fraction: float = 0.0
    fill_holes: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "fill_holes", flag(self.fill_holes, "volume_fill_holes"))
        if self.keep_largest < 0 or self.min_volume_ml < 0 or not 0 <= self.min_fraction <= 1:
            raise ValueError(
                "keep_largest and min_volume_ml must be at least 0 and min_fraction in [0, 1], got "
                f"{self.keep_largest}, {self.min_volume_ml}, {self.min_fraction}."
            )

    @property
    def active(self) -> bool:
        return bool(self.keep_largest or self.min_volume_ml or self.min_fraction or self.fill_holes)

    def __call__(self, mask: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, dict[str, Any]]:
        """Clean ``mask``, each structure on its own.

        A mask of one structure (values 0 and one label value) is cleaned as a whole. A label map of several is
        cleaned structure by structure: each keeps its own ``keep_largest`` components (the largest for each lung,
        say), and hole filling then fills only background that a structure encloses, so one structure enclosed by
        another (the left ventricle's cavity in its wall) stays what it is.

        Args:
            mask: (N, H, W) mask or label map; 0 is background, any other value a structure.
            spacing: (slice, row, column) spacing in mm.

        Returns:
            The cleaned uint8 mask, in the same values, and what was done: components found and kept (with their
            volumes in mL), the volume removed with them, and the volume added by hole filling; for several
            structures, the totals and the same figures for each (``per_structure``, by label value).

        Raises:
            ValueError: when ``mask`` is not 3D.
        """
        mask = np.asarray(mask)
        if mask.ndim != 3:
            raise ValueError(f"mask must be (N, H, W), got shape {mask.shape}")
        voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
        values = _label_values(mask)
        settings = {
            "keep_largest": self.keep_largest,
            "min_volume_ml": self.min_volume_ml,
            "min_fraction": self.min_fraction,
            "fill_holes": self.fill_holes,
        }
        if len(values) <= 1:
            kept, info = self._keep(mask > 0, voxel_ml)
            cleaned, filled_ml = self._fill(kept, None, voxel_ml)
            value = values[0] if values else 1
            labelled = cleaned.view(np.uint8) if value == 1 else cleaned.view(np.uint8) * np.uint8(value)
            return labelled, {
                **settings,
                **info,
                "filled_ml": filled_ml,
            }
        out = np.zeros(mask.shape, dtype=np.uint8)
        per_structure: dict[str, dict[str, Any]] = {}
        for value in values:
            kept, per_structure[str(value)] = self._keep(mask == value, voxel_ml)
            out[kept] = value
        for value in values:
            filled, per_structure[str(value)]["filled_ml"] = self._fill(out == value, out != 0, voxel_ml)
            out[filled] = value
        totals = {
            "components_found": sum(p["components_found"] for p in per_structure.values()),
            "removed_ml": round(sum(p["removed_ml"] for p in per_structure.values()), 2),
            "filled_ml": round(sum(p["filled_ml"] for p in per_structure.values()), 2),
        }
        return out, {**settings, **totals, "per_structure": per_structure}

    def _keep(self, full: np.ndarray, voxel_ml: float) -> tuple[np.ndarray, dict[str, Any]]:
        """The components of one structure's mask that the settings keep, and what was found and removed."""
        box = _foreground_box(full)
        mask = full[box]  # the same components as in the whole volume, in a fraction of the voxels
        labels, count = _label(mask, _CONNECTIVITY)
        voxels = _counts(labels, count + 1)[1:]
        sizes = voxels * voxel_ml
        order = np.argsort(sizes)[::-1]
        keep = order[: self.keep_largest] if self.keep_largest else order
        smallest = max(self.min_volume_ml, self.min_fraction * (float(sizes.max()) if count else 0.0))
        keep = [int(i) for i in keep if sizes[i] >= smallest]
        info = {
            "components_found": int(count),
            "components_kept_ml": [round(float(sizes[i]), 2) for i in keep],
            "removed_ml": round(float(voxels.sum() - voxels[keep].sum()) * voxel_ml, 2),
        }
        if len(keep) == count:
            return full, info  # nothing to remove
        kept = np.zeros(count + 1, dtype=bool)
        kept[[i + 1 for i in keep]] = True
        out = np.zeros(full.shape, dtype=bool)
        out[box] = kept[labels]
        return out, info

    def _fill(self, structure: np.ndarray, occupied: np.ndarray | None, voxel_ml: float) -> tuple[np.ndarray, float]:
        """``structure`` with the holes of each slice filled (with ``fill_holes``), where no other structure is
        (``occupied``; ``None``: no other structure), and the volume added."""
        if not self.fill_holes or not structure.any():
            return structure, 0.0
        box = _foreground_box(structure)
        inside = fill_slice_holes(structure[box])
        if occupied is not None:
            inside &= structure[box] | ~occupied[box]
        filled = np.zeros_like(structure)
        filled[box] = inside
        added = np.count_nonzero(inside) - np.count_nonzero(structure[box])
        return filled, round(float(added) * voxel_ml, 2)


def _label(mask: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndimage.label`` into uint16 labels, half the fresh memory of its int32 default (a series' labels are
    hundreds of MB, and touching them the first time costs as much as the labelling); int32 when there are more
    than 65,535 components."""
    try:
        return ndimage.label(mask, structure=structure, output=np.uint16)
    except RuntimeError:  # scipy: "insufficient bit-depth in requested output type"
        return ndimage.label(mask, structure=structure)


def _label_values(mask: np.ndarray) -> list[int]:
    """The non-zero values in ``mask``, ascending: one counting pass for the uint8 and bool masks the models give,
    instead of ``np.unique``'s sort (a fifth of a second on a 300-slice 512 x 512 series)."""
    if mask.dtype == np.bool_ or mask.dtype == np.uint8:
        present = _counts(mask.view(np.uint8), 256)
        return [int(v) for v in np.flatnonzero(present) if v != 0]
    return [int(v) for v in np.unique(mask) if v != 0]


def _counts(array: np.ndarray, minlength: int) -> np.ndarray:
    """``np.bincount(array.ravel(), minlength=minlength)`` of an (N, ...) array of integers in [0, minlength), slab
    by slab.

    ``np.bincount`` first copies its input to int64: for a 300-slice series that is a fresh array of hundreds of
    MB, whose first touch costs more than the count. Slabs of a few MB reuse the same memory.
    """
    per_slab = max(1, _SLAB_BYTES // (8 * max(1, int(np.prod(array.shape[1:])))))
    counts = np.zeros(minlength, dtype=np.int64)
    for start in range(0, len(array), per_slab):
        counts += np.bincount(array[start : start + per_slab].ravel(), minlength=minlength)
    return counts


def _foreground_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """The (N, H, W) box around a stack's foreground, one background pixel wider in H and W where the slice allows.

    Cleaning inside it equals cleaning the whole stack: components do not reach outside it, and background on its
    rim is joined, outside it, to the slice border, as :func:`fill_slice_holes` needs.
    """

    def extent(occupied: np.ndarray, margin: int) -> slice:
        index = np.flatnonzero(occupied)
        if not index.size:
            return slice(0, 0)
        return slice(max(int(index[0]) - margin, 0), min(int(index[-1]) + 1 + margin, occupied.size))

    return extent(mask.any(axis=(1, 2)), 0), extent(mask.any(axis=(0, 2)), 1), extent(mask.any(axis=(0, 1)), 1)
