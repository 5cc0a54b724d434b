"""What kind of images a dataset holds: the ``modality`` that scales them and the ``in_channels`` that carry them.

The bundles take both from the data, as they take ``structures``, so that training on Kvasir-SEG (colour endoscopy)
needs no ``--modality ES --in_channels 3``. In order of precedence:

* an explicit ``--modality`` or ``--in_channels`` (MONAI replaces the config's object with the value; nothing here
  runs);
* the datalist: a recipe's ``bundle_overrides`` (``{"modality": "ES", "in_channels": 3}``), else, for the modality, the
  decathlon-style ``modality`` (``"CT"`` or ``{"0": "MR"}``);
* the images: the first :data:`SAMPLE_SIZE` training images in datalist order (sorted by name in a folder), read with
  :class:`pipeline.io.LoadSlice` as decoded, so that a dataset of 100,000 images costs no more than a small one.
  DICOM images give their Modality tag; whole-number values below 0 are Hounsfield units (``CT``, as the int16 TIFFs
  of the Kaggle lung CT set); anything else is ``OT``, scaled by percentiles as every modality but CT is. Colour
  images (three channels that differ; :func:`is_colour`) give 3 channels, grey ones (grey stored as RGB too) 1.

The demo folder is CT of one channel, whether or not it has been generated yet: the bundles generate it on first use,
after the config has been read. Each choice read from the data is logged (INFO) with its reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.intake.datalist import _datalist_content, load_datalist
from pipeline.io import LoadSlice, is_dicom_file, nifti_depth, read_header
from pipeline.io.readers import NIFTI_SUFFIXES, file_suffix
from pipeline.transforms import CT_MODALITIES, NON_CT_MODALITIES

__all__ = ["SAMPLE_SIZE", "dataset_in_channels", "dataset_modality", "is_colour"]

logger = logging.getLogger(__name__)

SAMPLE_SIZE = 16
"""The most training images read to tell a dataset's modality and channels."""

_ACCEPTED = CT_MODALITIES + NON_CT_MODALITIES
_DEMO_MODALITY, _DEMO_CHANNELS = "CT", 1
# grey stored as RGB, as pipeline.inference.input_fit reads it: channels apart by more than 2 % of the value range on
# at most 1 % of the pixels (a coloured ruler or marker burnt into a grey X-ray does not make it colour)
_CHANNEL_TOLERANCE = 0.02
_COLOURED_SHARE = 0.01


@dataclass(frozen=True)
class _Sample:
    """One sampled image: its file name, its (C, H, W) values as decoded and its DICOM Modality ("" if none)."""

    name: str
    array: np.ndarray
    dicom_modality: str


def is_colour(image: np.ndarray) -> bool:
    """Whether an image is colour: three channels that differ by more than 2 % of its value range on more than 1 % of
    its pixels. Grey stored as RGB, with a few coloured pixels (a burnt-in marker), is not.

    Args:
        image: (C, H, W) values.
    """
    values = np.asarray(image, dtype=np.float32)
    if values.ndim != 3 or values.shape[0] != 3 or values.size == 0:
        return False
    spread = values.max(axis=0) - values.min(axis=0)
    tolerance = _CHANNEL_TOLERANCE * max(float(values.max() - values.min()), 1e-6)
    return bool(np.mean(spread > tolerance) > _COLOURED_SHARE)


def _is_demo(dataset_dir: str | Path, demo_dir: str | Path | None) -> bool:
    return demo_dir is not None and os.path.realpath(dataset_dir) == os.path.realpath(demo_dir)


def _datalist_setting(dataset_dir: str | Path, key: str) -> tuple[Path, Any, str]:
    """``(datalist path, value, where)`` of ``key`` in the datalist: its ``bundle_overrides`` first, then (decathlon
    style) its top level; value ``None`` when neither has it or there is no datalist."""
    path, content = _datalist_content(dataset_dir)
    overrides = content.get("bundle_overrides")
    if isinstance(overrides, Mapping) and overrides.get(key) is not None:
        return path, overrides[key], f"{path.name}'s bundle_overrides"
    if key == "modality" and content.get(key):
        return path, content[key], path.name
    return path, None, ""


def _modality_code(path: Path, value: Any) -> str:
    """The one accepted code a datalist's ``modality`` (``"ES"`` or ``{"0": "ES"}``) names, or an error naming it."""
    codes = list(value.values()) if isinstance(value, Mapping) else [value]
    found = {c.strip().upper() for c in codes if isinstance(c, str)}
    if len(found) != 1 or not all(isinstance(c, str) for c in codes):
        raise ValueError(
            f'{path}: modality {value!r} must name one DICOM modality code ("ES" or {{"0": "ES"}}); correct '
            "the datalist, or pass --modality"
        )
    code = found.pop()
    if code not in _ACCEPTED:
        raise ValueError(
            f"{path}: modality {value!r} is not one of the accepted codes ({', '.join(_ACCEPTED)}); correct the "
            "datalist, or pass --modality"
        )
    return code


def _training_images(items: Sequence[dict]) -> list[dict]:
    """The items with an image, training ones first (validation ones only where nothing else is)."""
    with_image = [item for item in items if item.get("image")]
    return [item for item in with_image if item.get("split") != "val"] or with_image


def _slice_index(item: Mapping[str, Any]) -> int | None:
    """The slice to read: the item's, else the middle one of a 3D NIfTI volume (a datalist keeps one item each)."""
    if item.get("slice_index") is not None or file_suffix(item["image"]) not in NIFTI_SUFFIXES:
        return item.get("slice_index")
    depth = nifti_depth(item["image"])
    return depth // 2 if depth > 1 else None


def _sample(dataset_dir: str | Path, size: int = SAMPLE_SIZE) -> list[_Sample]:
    """The first ``size`` training images of the dataset that can be read, as decoded (no cast to float).

    Unreadable ones are skipped: the pre-flight check reports every bad file of the dataset by name.

    Raises:
        ValueError: naming each file, when none of them can be read; or from :func:`load_datalist`.
    """
    loader = LoadSlice(dtype=None)
    samples, unreadable = [], []
    for item in _training_images(load_datalist(dataset_dir))[:size]:
        path = item["image"]
        try:
            array = np.asarray(loader(path, slice_index=_slice_index(item)))
            modality = str(read_header(path).get("Modality") or "").strip() if is_dicom_file(path) else ""
        except Exception as e:  # any reader failure: this image tells nothing, the pre-flight names it
            unreadable.append(f"{Path(path).name} ({e})")
            continue
        samples.append(_Sample(Path(path).name, array, modality))
    if not samples:
        raise ValueError(
            f"{dataset_dir}: none of the first {len(unreadable)} images can be read, so their modality and channels "
            f"are unknown: {'; '.join(unreadable)}. Fix the files, or pass --modality and --in_channels."
        )
    if unreadable:
        logger.info(
            "%d of the first %d images cannot be read (%s); the others tell the modality and channels",
            len(unreadable),
            len(unreadable) + len(samples),
            ", ".join(u.split(" (", 1)[0] for u in unreadable),
        )
    return samples


def _depth(array: np.ndarray) -> str:
    if np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.signedinteger):
        return f"{array.dtype.itemsize * 8}-bit"
    return "signed integer" if np.issubdtype(array.dtype, np.integer) else "floating-point"


def _described(samples: Sequence[_Sample]) -> str:
    """E.g. ``8-bit RGB images`` or ``16-bit grey and 8-bit grey images``."""
    kinds = sorted({f"{_depth(s.array)} {'RGB' if s.array.shape[0] == 3 else 'grey'}" for s in samples})
    return " and ".join(kinds) + " images"


def _modality_from_images(samples: Sequence[_Sample]) -> tuple[str, str]:
    """``(code, reason)`` from the sampled images."""
    tags = sorted({s.dicom_modality.upper() for s in samples if s.dicom_modality})
    if len(tags) > 1:
        examples = ", ".join(next(f"{s.name} is {t}" for s in samples if s.dicom_modality.upper() == t) for t in tags)
        raise ValueError(f"the images are of several DICOM modalities ({examples}); pass --modality")
    if tags and tags[0] in _ACCEPTED:
        return tags[0], "from the images' DICOM Modality"
    if tags:
        return "OT", f"the images' DICOM Modality {tags[0]} is not one the bundles scale by"
    low = min(float(s.array.min()) for s in samples)
    whole = all(np.issubdtype(s.array.dtype, np.integer) or np.all(s.array == np.round(s.array)) for s in samples)
    if whole and low < 0:
        return "CT", f"whole-number values down to {low:g}: Hounsfield units"
    return "OT", f"{_described(samples)}, not Hounsfield units"


def dataset_modality(dataset_dir: str | Path, demo_dir: str | Path | None = None) -> str:
    """The modality a dataset's images are scaled by (``CT``: a Hounsfield window; any other: percentiles).

    In order: the demo folder is ``CT``; the datalist's ``bundle_overrides`` ``modality``, else its decathlon-style
    ``modality``; else the first :data:`SAMPLE_SIZE` training images: their DICOM Modality tag, ``CT`` for
    whole-number values below 0 (Hounsfield units), else ``OT``. The choice and its reason are logged.

    Args:
        dataset_dir: the run's ``dataset_dir`` (a folder of ``images/`` and ``masks/``, or with a datalist JSON, or the
            JSON itself).
        demo_dir: the bundle's demo folder (``@demo_dir``): nothing is read for it.

    Returns:
        A code of :data:`pipeline.transforms.CT_MODALITIES` or :data:`pipeline.transforms.NON_CT_MODALITIES`.

    Raises:
        ValueError: naming the datalist, when its modality is not one accepted code; when the sampled DICOM images
            have several modalities, or none of the sampled images can be read (naming each); or from
            :func:`pipeline.intake.load_datalist` for a dataset it cannot read.
    """
    if _is_demo(dataset_dir, demo_dir):  # quiet: evaluation and inference fall back to it behind a model card
        logger.debug("modality %s: the demo data", _DEMO_MODALITY)
        return _DEMO_MODALITY
    path, value, where = _datalist_setting(dataset_dir, "modality")
    if value is not None:
        code, reason = _modality_code(path, value), f"from {where}"
    else:
        code, reason = _modality_from_images(_sample(dataset_dir))
    logger.info("modality %s: %s", code, reason)
    return code


def dataset_in_channels(dataset_dir: str | Path, demo_dir: str | Path | None = None) -> int:
    """The channels a network for a dataset takes: 3 for colour images, 1 for grey ones.

    In order: the demo folder has 1; the datalist's ``bundle_overrides`` ``in_channels``; else 3 when any of the
    first :data:`SAMPLE_SIZE` training images is colour (:func:`is_colour`), 1 otherwise (grey stored as RGB counts as
    grey). The choice and its reason are logged.

    Args:
        dataset_dir: the run's ``dataset_dir`` (see :func:`dataset_modality`).
        demo_dir: the bundle's demo folder (``@demo_dir``): nothing is read for it.

    Returns:
        1 or 3.

    Raises:
        ValueError: naming the datalist, when its ``in_channels`` is not 1 or 3; when none of the sampled images can
            be read (naming each); or from :func:`pipeline.intake.load_datalist`.
    """
    if _is_demo(dataset_dir, demo_dir):
        logger.debug("in_channels %d: the demo data", _DEMO_CHANNELS)
        return _DEMO_CHANNELS
    path, value, where = _datalist_setting(dataset_dir, "in_channels")
    if value is not None:
        if isinstance(value, bool) or value not in (1, 3):
            raise ValueError(f"{path}: bundle_overrides in_channels must be 1 (grey) or 3 (colour), got {value!r}")
        channels, reason = int(value), f"from {where}"
    else:
        samples = _sample(dataset_dir)
        colour = [s.name for s in samples if is_colour(s.array)]
        if colour:
            channels, reason = 3, f"colour images ({colour[0]}{' and others' if len(colour) > 1 else ''})"
        elif any(s.array.shape[0] == 3 for s in samples):
            channels, reason = 1, "grey images (stored as RGB)"
        else:
            channels, reason = 1, "grey images"
    logger.info("in_channels %d: %s", channels, reason)
    return channels
