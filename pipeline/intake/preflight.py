"""Pre-flight check: read every image/mask pair once before training and report what is wrong, by file name.

Modelled on nnU-Net's ``verify_dataset_integrity``. Fatal problems (unreadable files, missing partners, shape
mismatches, non-binary masks, NaN or infinite values; for a dataset of several structures, label maps with values its
``labels`` do not name, fractional values, or stored as JPEG, whose compression changes the values at every edge) stop
a run before its first epoch with one message that lists all of them; empty masks are reported as warnings (an empty
mask is legitimate for some tasks) unless ``empty_masks="error"``. Nothing is dropped silently.

The check also looks at what the images are (value range, whole numbers or not, channels) and warns when the run's
``modality`` does not fit them: CT windowing in Hounsfield units applied to 8-bit images that never go below 0, for
example, trains on images that are almost all white without any error.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.io import LoadSlice
from pipeline.io.readers import MAX_SLICE_PIXELS
from pipeline.segments import label_values
from pipeline.transforms import AIR_HU, BinarizeMask, auto_mask_threshold, mask_value_report

__all__ = [
    "DatasetCheckError",
    "DatasetReport",
    "Finding",
    "ImageMoments",
    "ImageStats",
    "check_dataset",
    "check_modality",
    "inspect_dataset",
    "preflight",
]

logger = logging.getLogger(__name__)

EMPTY_MASK_POLICIES = ("ignore", "warn", "error")
_BINARIZE = BinarizeMask()
_LOSSY_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


@dataclass(frozen=True)
class ImageStats:
    """What the images of a dataset hold, over all readable images.

    Attributes:
        minimum: smallest value.
        maximum: largest value.
        whole_numbers: whether every value is a whole number (integer files, or floats that hold integers).
        channels: the channel counts seen.
    """

    minimum: float
    maximum: float
    whole_numbers: bool
    channels: tuple[int, ...]

    def describe(self) -> str:
        kind = "whole numbers" if self.whole_numbers else "fractional values"
        channels = "/".join(str(c) for c in self.channels)
        return f"{channels} channel(s), values {self.minimum:g} to {self.maximum:g} ({kind})"

    @classmethod
    def merge(cls, stats: Sequence[ImageStats]) -> ImageStats | None:
        if not stats:
            return None
        return cls(
            min(s.minimum for s in stats),
            max(s.maximum for s in stats),
            all(s.whole_numbers for s in stats),
            tuple(sorted({c for s in stats for c in s.channels})),
        )


@dataclass(frozen=True)
class ImageMoments:
    """One image's size and first two moments, from which a dataset's intensity mean and spread are pooled.

    Attributes:
        height: rows.
        width: columns.
        mean: mean value over all channels.
        mean_square: mean of the squared values.
    """

    height: int
    width: int
    mean: float
    mean_square: float

    @classmethod
    def of(cls, image: np.ndarray) -> ImageMoments:
        """The moments of a (C, H, W) image, accumulated in float64."""
        mean = float(image.mean(dtype=np.float64))
        return cls(int(image.shape[-2]), int(image.shape[-1]), mean, float(image.var(dtype=np.float64)) + mean * mean)


class DatasetCheckError(ValueError):
    """Raised when the pre-flight check finds fatal problems; the message lists every one of them."""


@dataclass(frozen=True)
class Finding:
    """One problem found in one case.

    Attributes:
        case: the file (relative to the dataset root) the problem is about.
        problem: what is wrong, in words.
        fatal: whether training must not start.
    """

    case: str
    problem: str
    fatal: bool


@dataclass
class DatasetReport:
    """What the pre-flight check found.

    Attributes:
        num_pairs: number of items checked.
        findings: every problem, fatal or not, in dataset order.
        foreground_fraction: mean share of foreground pixels over the readable masks (any structure).
        images: value range and channels over the readable images, or ``None`` when none was readable.
        structure_fractions: with several structures, each one's mean share of the pixels, by label value.
        foreground_range: the smallest and largest share of foreground pixels of one mask, or ``None``.
        empty_masks: how many readable masks hold no foreground.
    """

    num_pairs: int
    findings: list[Finding] = field(default_factory=list)
    foreground_fraction: float = float("nan")
    foreground_range: tuple[float, float] | None = None
    empty_masks: int = 0
    structure_fractions: dict[int, float] = field(default_factory=dict)
    images: ImageStats | None = None
    moments: list[ImageMoments] = field(default_factory=list)

    def fingerprint(self, splits: Mapping[str, Sequence] | None = None) -> dict[str, Any]:
        """What the dataset holds, in numbers only: for a model card (no path, no file name, no DICOM attribute).

        Args:
            splits: the run's splits (``{"train": [...], "val": [...]}``); only their sizes are recorded.

        Returns:
            ``{"pairs", "splits", "height", "width" ({"min", "median", "max"} pixels), "channels", "intensity"
            ({"min", "max", "mean", "std", "whole_numbers"} over every pixel of the readable images),
            "foreground_fraction", "foreground_range" ([min, max] share of one mask), "empty_masks" (a count)}``,
            which inference compares its inputs and results with (:class:`pipeline.inference.InputFit`).
        """
        out: dict[str, Any] = {"pairs": self.num_pairs, "splits": {k: len(v) for k, v in (splits or {}).items()}}
        if self.moments:
            for axis in ("height", "width"):
                sizes = np.array([getattr(m, axis) for m in self.moments])
                out[axis] = {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())}
            weights = np.array([m.height * m.width for m in self.moments], dtype=np.float64)
            mean = float(np.average([m.mean for m in self.moments], weights=weights))
            square = float(np.average([m.mean_square for m in self.moments], weights=weights))
            out["intensity"] = {"mean": mean, "std": float(np.sqrt(max(square - mean * mean, 0.0)))}
        if self.images is not None:
            out["channels"] = list(self.images.channels)
            out.setdefault("intensity", {}).update(
                {"min": self.images.minimum, "max": self.images.maximum, "whole_numbers": self.images.whole_numbers}
            )
        out["foreground_fraction"] = None if np.isnan(self.foreground_fraction) else self.foreground_fraction
        if self.foreground_range is not None:
            out["foreground_range"] = list(self.foreground_range)
            out["empty_masks"] = self.empty_masks
        if self.structure_fractions:
            out["structure_fractions"] = {str(v): f for v, f in self.structure_fractions.items()}
        return out

    @property
    def fatal(self) -> list[Finding]:
        return [f for f in self.findings if f.fatal]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if not f.fatal]

    def summary(self, limit: int = 50) -> str:
        """Human-readable report: one headline, then one line per finding (at most ``limit`` of each kind).

        Fatal problems are listed file by file. Warnings that read the same but for their numbers, on more than
        :data:`_GROUPED` files (every JPEG mask of a colonoscopy set is 3-channel and noisy), take one line that counts
        them and names the first few.
        """
        lines = [
            f"pre-flight check of {self.num_pairs} pairs: {len(self.fatal)} fatal problem(s), "
            f"{len(self.warnings)} warning(s); mean foreground {self.foreground_fraction:.1%}"
            + (f"; images: {self.images.describe()}" if self.images is not None else "")
        ]
        for title, group in (("fatal", self.fatal), ("warning", self.warnings)):
            entries = [f"  [{title}] {f.case}: {f.problem}" for f in group] if title == "fatal" else _grouped(group)
            lines += entries[:limit]
            if len(entries) > limit:
                lines.append(f"  ... and {len(entries) - limit} more {title} line(s)")
        return "\n".join(lines)


_GROUPED = 3
"""More warnings of one kind than this take one line."""
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _grouped(findings: Sequence[Finding]) -> list[str]:
    """The warning lines: one per finding, but one per kind (the problem without its numbers) that more than
    :data:`_GROUPED` files share, in the order each kind was first found."""
    kinds: dict[str, list[Finding]] = {}
    for finding in findings:
        kinds.setdefault(_NUMBER.sub("#", finding.problem), []).append(finding)
    lines = []
    for same in kinds.values():
        if len(same) <= _GROUPED:
            lines += [f"  [warning] {f.case}: {f.problem}" for f in same]
        else:
            names = ", ".join(f.case for f in same[:_GROUPED])
            lines.append(f"  [warning] {len(same)} files, e.g. {names}: {same[0].problem} (figures of the first)")
    return lines


def _display_root(items: Sequence[dict]) -> str:
    paths = [os.path.abspath(p) for item in items for p in (item.get("image"), item.get("label")) if p]
    if not paths:
        return ""
    root = os.path.commonpath(paths)
    # one file (existing or not) is its own common path: show it relative to its folder, never as "."
    return os.path.dirname(root) if root in paths or os.path.isfile(root) else root


def _label_map_problem(mask: np.ndarray, path: str, values: tuple[int, ...]) -> str | None:
    """Why ``mask`` is not a label map of ``values`` (and 0), or ``None``: the values found, in words."""
    if path.lower().endswith(_LOSSY_SUFFIXES):
        return (
            "is a JPEG: lossy compression changes a label map's values at every edge. Store label maps as PNG, TIFF "
            "or NIfTI"
        )
    if mask.shape[0] > 1 and not (mask == mask[:1]).all():
        return f"has {mask.shape[0]} different channels; a label map has one (its values name the structures)"
    found, counts = np.unique(mask[0], return_counts=True)
    shown = ", ".join(f"{v:g} ({c} px)" for v, c in zip(found[:8], counts[:8], strict=True))
    shown += f", ... {len(found) - 8} more" if len(found) > 8 else ""
    if not np.all(found == np.round(found)):
        return f"has fractional values ({shown}): it was interpolated, or it is not a label map"
    unknown = [int(v) for v in found if v != 0 and int(v) not in values]
    if unknown:
        return (
            f"holds value(s) {', '.join(map(str, unknown))} that the dataset's labels do not name (values found: "
            f"{shown}; labels: 0 background, {', '.join(map(str, values))})"
        )
    return None


def _check_pair(
    item: dict, loaders: Mapping[str, LoadSlice], root: str, empty_masks: str, values: tuple[int, ...] | None = None
) -> tuple[list[Finding], float | dict[int, float], ImageStats | None, ImageMoments | None]:
    def show(path: str) -> str:
        return os.path.relpath(os.path.abspath(path), root) if root else path

    image_path, label_path = item.get("image"), item.get("label")
    case = show(image_path or label_path)
    if image_path is None:
        return [Finding(case, "mask has no matching image", True)], float("nan"), None, None
    if label_path is None:
        return [Finding(case, "image has no matching mask", True)], float("nan"), None, None

    findings: list[Finding] = []
    arrays = {}
    for key, path in (("image", image_path), ("mask", label_path)):
        try:
            arrays[key] = np.asarray(loaders[key](path, slice_index=item.get("slice_index")))
        except Exception as e:  # every reader failure is reported by name rather than stopping the scan
            findings.append(Finding(show(path), f"unreadable {key}: {e}", True))
    stats = moments = None
    if "image" in arrays and arrays["image"].size and np.isfinite(arrays["image"]).all():
        image = arrays["image"]
        whole = bool(np.all(image == np.round(image)))
        stats = ImageStats(float(image.min()), float(image.max()), whole, (int(image.shape[0]),))
        moments = ImageMoments.of(image)
    if len(arrays) < 2:
        return findings, float("nan"), stats, moments
    image, mask = arrays["image"], arrays["mask"]
    if image.shape[1:] != mask.shape[1:]:
        findings.append(
            Finding(
                case, f"image is {image.shape[1:]} (H, W) but its mask {show(label_path)} is {mask.shape[1:]}", True
            )
        )
    for key, array in arrays.items():
        bad = ~np.isfinite(array)
        if bad.any():
            findings.append(Finding(case, f"{key} has {int(bad.sum())} NaN or infinite value(s)", True))
    if values is not None:
        problem = _label_map_problem(mask, label_path, values)
        if problem is not None:
            findings.append(Finding(show(label_path), f"label map {problem}", True))
            return findings, float("nan"), stats, moments
        fractions = {v: float((mask[0] == v).mean()) for v in values}
        if sum(fractions.values()) == 0.0 and empty_masks != "ignore":
            findings.append(Finding(show(label_path), "label map is empty (no structure)", empty_masks == "error"))
        if image.size and float(image.max()) == float(image.min()):
            findings.append(Finding(case, f"image is constant ({float(image.min())})", False))
        return findings, fractions, stats, moments
    value_problem = mask_value_report(mask)
    if value_problem is not None:
        findings.append(Finding(show(label_path), f"mask is not binary: {value_problem}", True))
        return findings, float("nan"), stats, moments
    notes = []
    if mask.shape[0] > 1:
        notes.append(f"{mask.shape[0]}-channel mask reduced to one (channel maximum)")
    num_values = len(np.unique(mask))
    if num_values > 2:
        notes.append(f"{num_values} distinct values at edges (compression or interpolation noise)")
    if notes:
        threshold = auto_mask_threshold(mask)
        findings.append(Finding(show(label_path), f"{'; '.join(notes)}; binarised at {threshold:g}", False))
    foreground = float(np.asarray(_BINARIZE(mask)).mean())
    if foreground == 0.0 and empty_masks != "ignore":
        findings.append(Finding(show(label_path), "mask is empty (no foreground pixel)", empty_masks == "error"))
    if image.size and float(image.max()) == float(image.min()):
        findings.append(Finding(case, f"image is constant ({float(image.min())})", False))
    return findings, foreground, stats, moments


def check_dataset(
    items: Sequence[dict],
    empty_masks: str = "warn",
    num_workers: int = 4,
    max_pixels: int | None = MAX_SLICE_PIXELS,
    structures: Sequence[Any] | None = None,
) -> DatasetReport:
    """Read every pair and collect problems without raising.

    Args:
        items: datalist items with ``"image"`` and ``"label"`` paths (``None`` marks a missing partner), as
            returned by :func:`pipeline.intake.load_datalist`.
        empty_masks: ``"warn"`` (default), ``"error"`` (fatal) or ``"ignore"``.
        num_workers: threads used to read files. Default 4.
        max_pixels: a larger image (height x width) is a fatal problem, found from its header before decoding.
        structures: what the masks hold (label values, or :class:`pipeline.segments.Structure` or their dicts).
            ``None`` or one structure of value 1: binary masks (any two levels, binarised on load); otherwise label
            maps, whose every value must be 0 or a structure's.

    Returns:
        The report; file names in it are relative to the common folder of the dataset.

    Raises:
        ValueError: when ``empty_masks`` is not one of ``"ignore"``, ``"warn"``, ``"error"``.
    """
    if empty_masks not in EMPTY_MASK_POLICIES:
        raise ValueError(f"empty_masks must be one of {EMPTY_MASK_POLICIES}, got {empty_masks!r}.")
    loaders = {"image": LoadSlice(max_pixels=max_pixels), "mask": LoadSlice(max_pixels=max_pixels, palette="indices")}
    root = _display_root(items)
    values = tuple(sorted(label_values(structures))) if structures else None
    values = None if values == (1,) else values
    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        results = list(pool.map(lambda item: _check_pair(item, loaders, root, empty_masks, values), items))
    report = DatasetReport(num_pairs=len(items))
    fractions, per_structure = [], []
    for findings, fraction, _, moments in results:
        report.findings += findings
        if moments is not None:
            report.moments.append(moments)
        if isinstance(fraction, dict):
            per_structure.append(fraction)
            fractions.append(sum(fraction.values()))
        elif not np.isnan(fraction):
            fractions.append(fraction)
    if fractions:
        report.foreground_fraction = float(np.mean(fractions))
        report.foreground_range = (float(np.min(fractions)), float(np.max(fractions)))
        report.empty_masks = sum(1 for f in fractions if f == 0)
    if per_structure:
        report.structure_fractions = {v: float(np.mean([f[v] for f in per_structure])) for v in values or ()}
    report.images = ImageStats.merge([stats for _, _, stats, _ in results if stats is not None])
    return report


def check_modality(images: ImageStats | None, modality: str, in_channels: int | None = None) -> list[str]:
    """Warnings where the images do not look like what ``modality`` (and ``in_channels``) will do to them.

    Args:
        images: the dataset's image statistics (:attr:`DatasetReport.images`).
        modality: the run's ``--modality``.
        in_channels: the run's ``--in_channels``, if known.

    Returns:
        One message per mismatch, each saying what was seen and what to pass instead.
    """
    if images is None:
        return []
    messages = []
    seen = images.describe()
    if modality.strip().upper() == "CT":
        if images.minimum >= 0:
            depth = " (8-bit)" if images.whole_numbers and images.maximum <= 255 else ""
            messages.append(
                f"--modality CT windows Hounsfield units, but the images never go below 0{depth} ({seen}); CT in HU "
                "has air near -1000. If these are not HU, pass the images' modality (--modality OT, XR, MR, ES or "
                "SM: percentile scaling); if they are stored without their rescale, fix the files."
            )
        if 3 in images.channels:
            messages.append(f"--modality CT on colour images ({seen}): pass the images' modality (--modality ES, OT).")
    elif images.minimum < AIR_HU and images.whole_numbers:
        messages.append(
            f"the images look like CT in Hounsfield units ({seen}) but --modality is {modality}: percentile scaling "
            "replaces the CT window. Pass --modality CT if they are CT."
        )
    if in_channels == 1 and 3 in images.channels and modality.strip().upper() != "CT":
        messages.append(
            f"colour images ({seen}) with --in_channels 1 are converted to grey; --in_channels 3 keeps colour."
        )
    return messages


def inspect_dataset(
    items: Sequence[dict],
    empty_masks: str = "warn",
    num_workers: int = 4,
    modality: str | None = None,
    in_channels: int | None = None,
    max_pixels: int | None = MAX_SLICE_PIXELS,
    structures: Sequence[Any] | None = None,
) -> DatasetReport:
    """Check a dataset before a run; log warnings and stop on fatal problems.

    Args:
        items: datalist items (see :func:`check_dataset`).
        empty_masks: policy for empty masks, see :func:`check_dataset`.
        num_workers: threads used to read files.
        modality: the run's ``--modality``; when given, a mismatch with the images is warned about
            (:func:`check_modality`).
        in_channels: the run's ``--in_channels``.
        max_pixels: the largest image accepted (height x width; ``--max_image_pixels``).
        structures: what the masks hold (see :func:`check_dataset`).

    Returns:
        The report, whose :meth:`~DatasetReport.fingerprint` goes into the model card.

    Raises:
        DatasetCheckError: listing every fatal problem with its file name.
    """
    report = check_dataset(
        items, empty_masks=empty_masks, num_workers=num_workers, max_pixels=max_pixels, structures=structures
    )
    if report.fatal:
        raise DatasetCheckError(report.summary())
    logger.info(report.summary())
    if modality is not None:
        for message in check_modality(report.images, modality, in_channels):
            logger.warning(message)
    return report


def preflight(items: Sequence[dict], **kwargs: Any) -> list[dict]:
    """:func:`inspect_dataset` (same keyword arguments), returning ``items`` unchanged so a config can chain it.

    Raises:
        DatasetCheckError: listing every fatal problem with its file name.
    """
    inspect_dataset(items, **kwargs)
    return list(items)
