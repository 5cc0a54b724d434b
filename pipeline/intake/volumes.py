"""Volumes as training data: a datalist of 3D NIfTI image and label volumes trains the 2D bundles on their slices.

ACDC and the Medical Segmentation Decathlon publish one NIfTI volume per image and per label map. The datalist keeps
one item per volume, so that a seeded split keeps every slice of a volume (and, in a decathlon ``validation`` list,
every volume of a patient) on one side; :func:`expand_volumes` then turns each volume item into one item per axial
slice, ``{"image", "label", "slice_index", "volume", "name"}``, which :class:`pipeline.io.LoadSliced` reads slice by
slice (in LPS display order, as :func:`pipeline.io.nifti_slice.load_nifti_slice` orients them). The ``volume`` key
lets validation score each volume in 3D (:class:`pipeline.evaluation.VolumeDice`), as the ACDC challenge does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.io.nifti_slice import nifti_depth
from pipeline.io.readers import NIFTI_SUFFIXES, file_suffix

__all__ = ["expand_volumes", "without_volumes"]


def _is_nifti(path: object) -> bool:
    return isinstance(path, (str, os.PathLike)) and file_suffix(os.fspath(path)) in NIFTI_SUFFIXES


def _volume_name(path: str) -> str:
    name = Path(path).name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def expand_volumes(items: Sequence[dict]) -> list[dict]:
    """One item per slice for every item whose image is a 3D NIfTI volume; other items as they are.

    Args:
        items: datalist items (``{"image", "label", ...}``).

    Returns:
        The items in order, each volume replaced by its slices (inferior to superior), each slice item holding the
        volume item's keys plus ``slice_index``, ``volume`` (the image file's name without suffix) and ``name``
        (``<volume>_z<k>``).

    Raises:
        ValueError: naming both files, when an image volume and its label volume have different numbers of slices.
    """
    out: list[dict] = []
    for item in items:
        image = item.get("image")
        if not _is_nifti(image) or "slice_index" in item or not os.path.isfile(image):
            out.append(item)
            continue
        depth = nifti_depth(image)
        if depth <= 1:
            out.append(item)
            continue
        label = item.get("label")
        if _is_nifti(label) and os.path.isfile(label) and nifti_depth(label) != depth:
            raise ValueError(
                f"{image} has {depth} slices but its label volume {label} has {nifti_depth(label)}: a volume and its "
                "label map must have the same slices"
            )
        volume = _volume_name(os.fspath(image))
        out += [{**item, "slice_index": k, "volume": volume, "name": f"{volume}_z{k:03d}"} for k in range(depth)]
    return out


def without_volumes(items: Sequence[dict]) -> bool:
    """Whether no item's image is a 3D volume (the bundles then leave the 3D figures out)."""
    return not any(
        _is_nifti(i.get("image")) and os.path.isfile(i["image"]) and ("volume" in i or nifti_depth(i["image"]) > 1)
        for i in items
    )
