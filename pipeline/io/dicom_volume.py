"""One DICOM series as a volume: slices in geometric order, rescaled, with its affine and honest spacing.

What MONAI's ``PydicomReader`` does not do with a series (reference.md section 4), done here:

- slices are ordered by their position along the slice normal, not by InstanceNumber;
- files without ImagePositionPatient, ImageOrientationPatient or PixelSpacing, multi-frame objects, undecodable or
  truncated pixel data and compressed transfer syntaxes without an installed decoder are refused with an error that
  names the file (by file name) and the problem, instead of getting an invented geometry;
- duplicate slice positions and non-uniform spacing are reported as warnings (kept on the volume and logged), and
  the spacing used is the median step, never a made-up one;
- RescaleSlope/Intercept (HU for CT) are applied and MONOCHROME1 is inverted.

Coordinates: the array is (N, H, W) = (slice, row, column); ``affine`` maps (column i, row j, slice k, 1) to DICOM
patient coordinates (LPS, mm); ``spacing`` is (slice, row, column) spacing in mm, matching the array axes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_rescale, pixel_array

from pipeline.io.dicom_series import DicomSeries, DicomSeriesError, read_header, safe_error_text
from pipeline.io.dicom_slice import (
    MAX_DICOM_VALUES,
    PIXEL_DATA_KEYWORDS,
    check_decodable,
    header_int,
    invert_monochrome1,
)
from pipeline.io.readers import SliceReadError, decoder_failed

__all__ = ["SeriesVolume", "load_series_volume"]

logger = logging.getLogger(__name__)

# Two slices are at the same position when their distance along the normal is below this fraction of the typical step.
_DUPLICATE_FRACTION = 1e-3
# Steps below this (mm) are ignored when estimating the typical step: they are duplicates, not spacing.
_MIN_STEP_MM = 1e-3
# A slice stack whose step leans away from the slice normal by more than this (degrees) is reported as sheared.
_MAX_TILT_DEGREES = 0.5
_MAX_LISTED = 5  # gaps named one by one in a warning


@dataclass
class SeriesVolume:
    """A loaded series.

    Attributes:
        series: the series it was loaded from.
        array: (N, H, W) float32, slices in ascending position along the slice normal, rescaled (HU for CT),
            MONOCHROME1 inverted.
        datasets: the N slice headers in the same order (PixelData removed after decoding); ``ds.filename`` is the
            file.
        affine: (4, 4) float64 mapping (column, row, slice, 1) to patient LPS mm.
        spacing: (slice, row, column) spacing in mm; the slice spacing is the median step between slices.
        warnings: problems found and worked around (duplicate positions, non-uniform spacing, shear), also logged.
        slice_thickness: with non-uniform spacing, each slice's own extent along the normal in mm (half the steps
            to its neighbours, the midpoint rule), which volumes are measured with; ``None`` when the spacing is
            uniform (every slice is ``spacing[0]`` thick).
    """

    series: DicomSeries
    array: np.ndarray
    datasets: list[Dataset]
    affine: np.ndarray
    spacing: tuple[float, float, float]
    warnings: list[str] = field(default_factory=list)
    slice_thickness: np.ndarray | None = None

    @property
    def num_slices(self) -> int:
        """N."""
        return int(self.array.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(N, H, W)."""
        return tuple(int(n) for n in self.array.shape)

    @property
    def files(self) -> list[Path]:
        """The N files in slice order (duplicates that were dropped are not included)."""
        return [Path(ds.filename) for ds in self.datasets]


@dataclass
class _Slice:
    path: Path
    ds: Dataset
    position: np.ndarray  # ImagePositionPatient (3,)
    orientation: np.ndarray  # ImageOrientationPatient (6,)
    pixel_spacing: np.ndarray  # PixelSpacing (2,): row, column
    instance: float  # InstanceNumber, inf when absent
    along: float = 0.0  # position along the slice normal


def _numbers(series: DicomSeries, path: Path, ds: Dataset, keyword: str, count: int) -> np.ndarray:
    """``keyword``'s value as ``count`` finite floats, or an error naming the file."""
    value = ds.get(keyword)
    if value in (None, ""):
        raise DicomSeriesError(
            f"{series.label}: {path.name}: no {keyword}; without it the slice geometry is unknown, refusing to guess "
            f"slice order and spacing"
        )
    try:
        numbers = np.array([float(v) for v in (value if isinstance(value, MultiValue | list | tuple) else [value])])
    except (TypeError, ValueError):
        numbers = np.array([])
    if numbers.shape != (count,) or not np.isfinite(numbers).all():
        raise DicomSeriesError(f"{series.label}: {path.name}: {keyword} {value!r} is not {count} numbers")
    return numbers


def _read_slice(series: DicomSeries, path: Path) -> _Slice:
    """Read one header (pixel data deferred) and refuse what cannot become one slice of the volume."""
    try:
        ds = read_header(path)
        check_decodable(ds, path.name)
        n_frames = header_int(ds, "NumberOfFrames", 1, path.name)
        rows, columns = header_int(ds, "Rows", 0, path.name), header_int(ds, "Columns", 0, path.name)
    except SliceReadError as e:
        raise DicomSeriesError(f"{series.label}: {e}") from e
    if n_frames > 1:
        raise DicomSeriesError(
            f"{series.label}: {path.name}: multi-frame object ({n_frames} frames, e.g. Enhanced CT/MR); only series "
            f"of single-frame slices are supported"
        )
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomSeriesError(
            f"{series.label}: {path.name}: PhotometricInterpretation {photometric!r}; a volume needs grayscale "
            f"(MONOCHROME1 or MONOCHROME2)"
        )
    if (rows, columns) != (series.rows, series.columns):  # the file changed since the series was scanned
        raise DicomSeriesError(
            f"{series.label}: {path.name}: image size {rows}x{columns}, expected {series.rows}x{series.columns}"
        )
    if rows * columns > MAX_DICOM_VALUES:
        raise DicomSeriesError(
            f"{series.label}: {path.name}: header declares {rows}x{columns} pixels, more than MAX_DICOM_VALUES="
            f"{MAX_DICOM_VALUES}; refusing to decode"
        )
    try:
        instance = float(ds.get("InstanceNumber"))
    except (TypeError, ValueError):  # absent or not a number
        instance = math.inf
    return _Slice(
        path,
        ds,
        position=_numbers(series, path, ds, "ImagePositionPatient", 3),
        orientation=_numbers(series, path, ds, "ImageOrientationPatient", 6),
        pixel_spacing=_numbers(series, path, ds, "PixelSpacing", 2),
        instance=instance,
    )


def _orientation(series: DicomSeries, slices: list[_Slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row direction, column direction and slice normal from the first slice; the others must agree."""
    first = slices[0]
    iop = first.orientation
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    if not (
        abs(np.linalg.norm(row_dir) - 1) < 1e-2
        and abs(np.linalg.norm(col_dir) - 1) < 1e-2
        and abs(row_dir @ col_dir) < 1e-2
    ):
        raise DicomSeriesError(
            f"{series.label}: {first.path.name}: ImageOrientationPatient {iop.tolist()} is not two orthogonal unit "
            f"vectors"
        )
    for s in slices[1:]:
        if np.abs(s.orientation - iop).max() > 1e-3:
            raise DicomSeriesError(
                f"{series.label}: {s.path.name}: ImageOrientationPatient {s.orientation.tolist()} differs from "
                f"{first.path.name}'s {iop.tolist()}"
            )
    return row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir), normal / np.linalg.norm(normal)


def _pixel_spacing(series: DicomSeries, slices: list[_Slice]) -> np.ndarray:
    """(row spacing, column spacing) in mm, the same in every slice."""
    first = slices[0]
    spacing = first.pixel_spacing
    if (spacing <= 0).any():
        raise DicomSeriesError(f"{series.label}: {first.path.name}: PixelSpacing {spacing.tolist()} is not positive")
    for s in slices[1:]:
        if np.abs(s.pixel_spacing - spacing).max() > 1e-4 * spacing.max():
            raise DicomSeriesError(
                f"{series.label}: {s.path.name}: PixelSpacing {s.pixel_spacing.tolist()} differs from "
                f"{first.path.name}'s {spacing.tolist()}"
            )
    return spacing


def _drop_duplicates(series: DicomSeries, slices: list[_Slice], warnings: list[str]) -> list[_Slice]:
    """Keep one slice per position (the lowest InstanceNumber) from slices sorted by position; warn for the rest."""
    steps = np.diff([s.along for s in slices])
    real_steps = steps[steps > _MIN_STEP_MM]
    tolerance = _DUPLICATE_FRACTION * (float(np.median(real_steps)) if real_steps.size else 1.0)
    groups: list[list[_Slice]] = [[slices[0]]]
    for s in slices[1:]:
        if s.along - groups[-1][0].along <= tolerance:
            groups[-1].append(s)
        else:
            groups.append([s])
    kept = []
    for group in groups:
        group.sort(key=lambda s: s.instance)  # stable: file order breaks ties
        kept.append(group[0])
        if len(group) > 1:
            dropped = ", ".join(f"{s.path.name} (InstanceNumber {_instance(s)})" for s in group[1:])
            warnings.append(
                f"{series.label}: duplicate slice position {group[0].along:.3f} mm along the slice normal: kept "
                f"{group[0].path.name} (InstanceNumber {_instance(group[0])}), dropped {dropped}"
            )
    return kept


def _instance(s: _Slice) -> str:
    return "none" if math.isinf(s.instance) else f"{s.instance:g}"


def _slice_step(
    series: DicomSeries, slices: list[_Slice], normal: np.ndarray, tolerance: float, warnings: list[str]
) -> tuple[np.ndarray, float]:
    """The affine's slice step vector and the slice spacing (mm), warning about gaps and shear."""
    if len(slices) == 1:
        try:
            thickness = float(slices[0].ds.get("SliceThickness") or 0.0)
        except (TypeError, ValueError):
            thickness = 0.0
        step = thickness if thickness > 0 else 1.0
        source = "its SliceThickness" if thickness > 0 else "no SliceThickness, assumed"
        warnings.append(f"{series.label}: single slice; slice spacing {step:g} mm ({source})")
        return normal * step, step
    steps = np.diff([s.along for s in slices])
    median = float(np.median(steps))
    off = np.flatnonzero(np.abs(steps - median) > tolerance * median)
    if off.size:
        where = ", ".join(
            f"{slices[i].path.name} -> {slices[i + 1].path.name}: {steps[i]:.3f} mm" for i in off[:_MAX_LISTED]
        )
        more = f" and {off.size - _MAX_LISTED} more" if off.size > _MAX_LISTED else ""
        warnings.append(
            f"{series.label}: non-uniform slice spacing: steps along the slice normal from {steps.min():.3f} to "
            f"{steps.max():.3f} mm (median {median:.3f} mm); {off.size} step(s) differ from the median by more than "
            f"{tolerance:.0%} ({where}{more}); volumes use each slice's own thickness, the NIfTI affine the median step"
        )
        return normal * median, median
    step = (slices[-1].position - slices[0].position) / (len(slices) - 1)
    along = float(step @ normal)
    tilt = math.degrees(math.atan2(float(np.linalg.norm(step - along * normal)), along))
    if tilt > _MAX_TILT_DEGREES:
        warnings.append(
            f"{series.label}: slices are sheared by {tilt:.1f} degrees from the slice normal (gantry tilt?); the "
            f"affine keeps the shear, spacing is the distance between slice planes"
        )
    return step, median


def _decode(series: DicomSeries, slices: list[_Slice]) -> np.ndarray:
    """(N, H, W) float32: each file's pixel data read and decoded once, rescaled, MONOCHROME1 inverted."""
    array = np.empty((len(slices), series.rows, series.columns), dtype=np.float32)
    for k, s in enumerate(slices):
        try:
            pixels = pixel_array(s.ds)  # not ds.pixel_array: that also hashes the header to cache the result
        except BaseException as e:  # truncated, corrupt or mislabelled pixel data; a Rust decoder panics
            if not decoder_failed(e):
                raise
            raise DicomSeriesError(
                f"{series.label}: {s.path.name}: cannot decode pixel data ({safe_error_text(e, s.path)})"
            ) from e
        if pixels.shape != array.shape[1:]:
            raise DicomSeriesError(
                f"{series.label}: {s.path.name}: decoded pixel array has shape {pixels.shape}, expected "
                f"{array.shape[1:]}"
            )
        if "ModalityLUTSequence" in s.ds:
            array[k] = apply_rescale(pixels, s.ds)
        else:
            array[k] = pixels
            slope, intercept = float(s.ds.get("RescaleSlope") or 1.0), float(s.ds.get("RescaleIntercept") or 0.0)
            if slope != 1.0:
                array[k] *= slope
            if intercept != 0.0:
                array[k] += intercept
        if str(s.ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
            array[k] = invert_monochrome1(array[k], s.ds)
        for keyword in PIXEL_DATA_KEYWORDS:  # the decoded copy lives in ``array``
            if keyword in s.ds:
                delattr(s.ds, keyword)
    return array


def load_series_volume(series: DicomSeries, *, spacing_tolerance: float = 0.05) -> SeriesVolume:
    """Load a series as an (N, H, W) volume in geometric slice order, with its affine and spacing.

    Headers are read and checked first, slices sorted by position along the slice normal
    (``ImagePositionPatient . cross(row direction, column direction)``) and duplicates dropped; only then is each
    remaining file's pixel data read and decoded, once.

    Args:
        series: from ``scan_dicom_folder`` / ``group_series`` (and ``select_series``).
        spacing_tolerance: relative deviation of a step from the median step above which the spacing is reported as
            non-uniform. Defaults to 0.05.

    Returns:
        the :class:`SeriesVolume`; ``warnings`` lists duplicate positions (the file kept has the lowest
        InstanceNumber), non-uniform spacing (the spacing and affine then use the median step, and
        ``slice_thickness`` each slice's own extent for volumes) and shear.

    Raises:
        ValueError: ``spacing_tolerance`` is not positive.
        DicomSeriesError: a file is unreadable or truncated, lacks ImagePositionPatient, ImageOrientationPatient or
            PixelSpacing (or they disagree between files), is multi-frame or not grayscale, has no pixel data, pixel
            data that cannot be decoded, or a compressed transfer syntax without an installed decoder (named by UID
            and name). Messages name the series by label and the file by file name.
    """
    if not spacing_tolerance > 0:
        raise ValueError(f"spacing_tolerance must be positive, got {spacing_tolerance}")
    if not series.files:
        raise DicomSeriesError(f"{series.label}: series has no files")
    start = time.perf_counter()
    slices = [_read_slice(series, path) for path in series.files]
    row_dir, col_dir, normal = _orientation(series, slices)
    row_spacing, column_spacing = _pixel_spacing(series, slices)
    for s in slices:
        s.along = float(s.position @ normal)
    slices.sort(key=lambda s: s.along)  # stable: equal positions stay in file order
    warnings: list[str] = []
    slices = _drop_duplicates(series, slices, warnings)
    step, slice_spacing = _slice_step(series, slices, normal, spacing_tolerance, warnings)
    array = _decode(series, slices)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * column_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = step
    affine[:3, 3] = slices[0].position
    for message in warnings:
        logger.warning(message)
    spacing = (slice_spacing, float(row_spacing), float(column_spacing))
    logger.info(
        "%s: loaded %d slices of %dx%d, spacing %.3g x %.3g x %.3g mm, in %.2f s",
        series.label,
        len(slices),
        series.rows,
        series.columns,
        *spacing,
        time.perf_counter() - start,
    )
    thickness = None
    if any("non-uniform slice spacing" in w for w in warnings):
        thickness = _midpoint_thickness(np.array([s.along for s in slices]))
    return SeriesVolume(series, array, [s.ds for s in slices], affine, spacing, warnings, thickness)


def _midpoint_thickness(along: np.ndarray) -> np.ndarray:
    """Each slice's extent along the normal: half the step to each neighbour, the first and last slice counting
    their one step on both sides (as a uniform series counts every slice one step thick), so that the extents add up
    to the span plus half a step at each end."""
    steps = np.diff(along)
    before = np.concatenate([steps[:1], steps])
    after = np.concatenate([steps, steps[-1:]])
    return ((before + after) / 2.0).astype(np.float64)
