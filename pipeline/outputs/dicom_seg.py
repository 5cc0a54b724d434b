"""DICOM Segmentation (SEG) objects for a predicted mask or label map, through highdicom (reference.md section 4).

The SEG is a binary segmentation of the source CT series with one segment per structure: a binary mask gives one
segment, a label map of ``K`` structures gives segments 1..K in the order of the structures' label values. The SEG
references every source instance, names each segment with SNOMED CT codes and the algorithm by name and version
(segment algorithm type AUTOMATIC), and says in its series and content descriptions that it is not for clinical use.
Frames without any foreground are omitted (``omit_empty_frames``); an all-empty mask keeps every frame, because a SEG
needs at least one.

The SEG copies the patient and study attributes of its sources, as the standard requires, so it carries the same
patient information as the source images. Nothing patient-identifying is logged: files are named by file name only,
and highdicom's warning about the form of the patient's name (which quotes the name) is silenced.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from pipeline.atomic import atomic_output
from pipeline.segments import Structure, structures_from_config

__all__ = ["NOT_FOR_CLINICAL_USE", "read_dicom_seg", "run_dciodvfy", "series_description", "write_dicom_seg"]

logger = logging.getLogger("pipeline.outputs")

NOT_FOR_CLINICAL_USE = "not for clinical use"

# Long String (LO) and Code String (CS) limits of the description and label attributes.
_LO_MAX = 64
_CS_MAX = 16
# Series number of the SEG when none is given: the source series number plus this offset (1000 + 2 for series 2).
_SERIES_NUMBER_OFFSET = 1000
_PERSON_NAME_WARNING = ".*unlikely to represent the intended person name.*"
# The one segment's codes when none are given: SNOMED CT "Anatomical Structure", "Lung structure".
_LUNG_CATEGORY = ("91723000", "Anatomical Structure")
_LUNG_TYPE = ("39607008", "Lung structure")


def _coded_concept(code: Sequence[str] | Code, what: str) -> hd.sr.CodedConcept:
    """``(value, meaning)`` (SNOMED CT), ``(value, scheme, meaning)`` or a pydicom ``Code`` as a ``CodedConcept``."""
    if isinstance(code, Code):
        return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning, code.scheme_version)
    parts = [str(p) for p in code] if not isinstance(code, str) else []
    if len(parts) == 2:
        return hd.sr.CodedConcept(parts[0], "SCT", parts[1])
    if len(parts) == 3:
        return hd.sr.CodedConcept(*parts)
    raise ValueError(f"{what} must be (code, meaning), (code, scheme, meaning) or a pydicom Code, got {code!r}")


def _planes(mask: np.ndarray, source_datasets: Sequence[Dataset]) -> np.ndarray:
    """Check that ``mask`` is (N, Rows, Columns), one plane per source dataset; return it as an array."""
    mask = np.asarray(mask)
    if not source_datasets:
        raise ValueError("source_datasets is empty: a DICOM SEG needs the headers of the images it segments")
    rows, columns = int(source_datasets[0].Rows), int(source_datasets[0].Columns)
    expected = (len(source_datasets), rows, columns)
    if mask.shape != expected:
        raise ValueError(
            f"mask shape {mask.shape} does not match the source series (N, Rows, Columns) = {expected}; the mask must "
            "be aligned with source_datasets, one (H, W) plane per dataset in the same order"
        )
    return mask


def _binary_mask(mask: np.ndarray, source_datasets: Sequence[Dataset]) -> np.ndarray:
    """Check that ``mask`` is (N, Rows, Columns) with only 0/1 values; return it as uint8."""
    mask = _planes(mask, source_datasets)
    integers_in_range = mask.dtype.kind in "iu" and (mask.size == 0 or (mask.min() >= 0 and mask.max() <= 1))
    if mask.dtype != bool and not integers_in_range:  # min and max: a fraction of np.unique's time on a series
        values = np.unique(mask)
        if not np.isin(values, (0, 1)).all():
            shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6 else "")
            raise ValueError(f"mask must be binary (0/1 or bool), got values {shown}")
    return mask.astype(np.uint8)


def _segment_numbers(mask: np.ndarray, source_datasets: Sequence[Dataset], values: Sequence[int]) -> np.ndarray:
    """The label map ``mask`` (N, Rows, Columns) with each structure's value replaced by its segment number.

    Args:
        mask: label map, or a bool mask for one structure of value 1; 0 is the background.
        source_datasets: the headers ``mask`` must line up with.
        values: the structures' label values in segment order: ``values[k - 1]`` becomes segment ``k``.

    Returns:
        (N, Rows, Columns) uint8 of segment numbers 0..K.

    Raises:
        ValueError: a shape that does not match the sources, or a value that is neither 0 nor a structure's.
    """
    mask = _planes(mask, source_datasets)
    if mask.dtype == bool or (mask.dtype.kind in "iu" and (mask.size == 0 or (mask.min() >= 0 and mask.max() <= 255))):
        labels = mask.astype(np.uint8, copy=False)
    else:  # floats, or integers out of the uint8 range: whole known values only
        found = np.unique(mask)
        unknown = found[~np.isin(found, (0, *values))]
        if unknown.size:
            raise ValueError(_unknown_values(unknown, values))
        labels = mask.astype(np.uint8)
    if list(values) == list(range(1, len(values) + 1)):  # values 1..K (binary models, most datasets): as they are
        if labels.size and int(labels.max()) > len(values):
            raise ValueError(_unknown_values(np.unique(labels[labels > len(values)]), values))
        return labels
    # One look-up pass: values that are not a structure's map past the last segment number (none can when K is 255).
    lut = np.full(256, len(values) + 1 if len(values) < 255 else 0, dtype=np.uint8)
    lut[0] = 0
    lut[list(values)] = np.arange(1, len(values) + 1)
    numbers = np.take(lut, labels)
    if labels.size and len(values) < 255 and int(numbers.max()) > len(values):
        raise ValueError(_unknown_values(np.unique(labels[numbers > len(values)]), values))
    return numbers


def _unknown_values(unknown: np.ndarray, values: Sequence[int]) -> str:
    shown = ", ".join(f"{v:g}" for v in unknown[:8].tolist()) + (", ..." if unknown.size > 8 else "")
    return f"mask values {shown} are not among the structures' values {list(values)} (0: background)"


# Type 2 attributes highdicom copies from the sources into the SEG (patient, general study modules): present but
# possibly empty by the standard, yet often absent from anonymised exports; highdicom raises AttributeError then.
_TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


# Type 3 reference sequences of the patient and study modules, which highdicom also copies: each item must hold both
# attributes (Type 1 in the item). Anonymised archives often keep items without the SOP Class UID, and a SEG that
# copies them fails dciodvfy; such items are dropped, and the sequence with them when none is left.
_REFERENCE_SEQUENCES = ("ReferencedStudySequence", "ReferencedPatientSequence")
_REFERENCE_ITEM_KEYS = ("ReferencedSOPClassUID", "ReferencedSOPInstanceUID")


def _complete_reference(item: Dataset) -> bool:
    return all(str(item.get(keyword) or "").strip() for keyword in _REFERENCE_ITEM_KEYS)


def _repaired_sources(source_datasets: Sequence[Dataset]) -> list[Dataset]:
    """The sources as highdicom may copy them into a valid SEG (on copies; the inputs are unchanged).

    Every missing Type 2 attribute highdicom copies is added empty, and reference-sequence items that lack a Type 1
    attribute are dropped.
    """
    fixed = []
    for ds in source_datasets:
        missing = [keyword for keyword in _TYPE2_COPIED if keyword not in ds]
        broken = [
            keyword
            for keyword in _REFERENCE_SEQUENCES
            if keyword in ds and not all(_complete_reference(item) for item in ds[keyword].value)
        ]
        if missing or broken:
            ds = copy.deepcopy(ds)  # a shallow copy would share the element dict with the caller's dataset
            for keyword in missing:
                setattr(ds, keyword, None)
            for keyword in broken:
                kept = [item for item in ds[keyword].value if _complete_reference(item)]
                if kept:
                    ds[keyword].value = kept
                else:
                    delattr(ds, keyword)
        fixed.append(ds)
    return fixed


def series_description(description: str | None, *names: str) -> str:
    """A series description that ends in "not for clinical use" and fits DICOM's 64 characters (LO).

    Args:
        description: the user's, cut to fit with the notice appended when it lacks it; or ``None`` for the default:
            the first of ``names`` that fits with ``" - research use only, not for clinical use"`` (the last always
            does, e.g. ``"Segmentation"``).
        names: the default's candidates, the most telling first (the segments' labels, then a count).

    Raises:
        ValueError: the result is over 64 characters.
    """
    if description is None:
        suffix = f" - research use only, {NOT_FOR_CLINICAL_USE}"
        fitting = [name + suffix for name in names if len(name + suffix) <= _LO_MAX]
        description = fitting[0] if fitting else names[-1] + suffix
    if NOT_FOR_CLINICAL_USE not in description.lower():
        suffix = f" - {NOT_FOR_CLINICAL_USE}"
        description = description[: _LO_MAX - len(suffix)] + suffix
    if len(description) > _LO_MAX:
        raise ValueError(f"series_description must be at most {_LO_MAX} characters (LO), got {description!r}")
    return description


def _series_description(description: str | None, labels: Sequence[str]) -> str:
    """The SEG's series description (:func:`series_description`): the default names the segments (``"Lung - research
    use only, not for clinical use"``, ``"Right lung, Left lung - research use only, ..."``), or counts them when their
    names do not fit."""
    count = "Segmentation" if len(labels) == 1 else f"{len(labels)} segments"
    return series_description(description, ", ".join(labels), count)


def _content_label(label: str) -> str:
    """``label`` as a valid Code String content label: upper case, A-Z 0-9 and underscore, at most 16 characters."""
    cleaned = re.sub(r"[^A-Z0-9_]+", "_", label.upper()).strip("_")[:_CS_MAX]
    return cleaned or "SEGMENTATION"


@dataclass(frozen=True)
class _Segment:
    """One segment of the SEG: the structure's value in the mask, and its description as highdicom takes it."""

    value: int
    label: str
    category: hd.sr.CodedConcept
    property_type: hd.sr.CodedConcept
    color: Sequence[int] | None


def _segments(
    structures: Sequence[Structure | Mapping[str, Any]] | None,
    segment_label: str | None,
    segmented_property_category: Sequence[str] | Code | None,
    segmented_property_type: Sequence[str] | Code | None,
    display_color: Sequence[int] | None,
) -> list[_Segment]:
    """The segments to write, by segment number: the structures by value, or the one segment the single-segment
    arguments describe (value 1).

    Raises:
        ValueError: empty or malformed structures, single-segment arguments given with them, or bad codes.
    """
    single = {
        "segment_label": segment_label,
        "segmented_property_category": segmented_property_category,
        "segmented_property_type": segmented_property_type,
        "display_color": display_color,
    }
    if structures is None:
        category = _LUNG_CATEGORY if segmented_property_category is None else segmented_property_category
        property_type = _LUNG_TYPE if segmented_property_type is None else segmented_property_type
        return [
            _Segment(
                value=1,
                label="Lung" if segment_label is None else segment_label,
                category=_coded_concept(category, "segmented_property_category"),
                property_type=_coded_concept(property_type, "segmented_property_type"),
                color=display_color,
            )
        ]
    given = [name for name, value in single.items() if value is not None]
    if given:
        raise ValueError(
            f"pass either structures or {', '.join(given)}: each structure carries its own label, codes and colour"
        )
    return [
        _Segment(
            value=s.value,
            label=s.label,
            category=_coded_concept(s.category, f"the category of structure {s.label!r}"),
            property_type=_coded_concept(s.property_type, f"the property type of structure {s.label!r}"),
            color=s.color,
        )
        for s in _structures(structures)
    ]


def _structures(structures: Sequence[Structure | Mapping[str, Any]]) -> list[Structure]:
    """``structures`` parsed and sorted by value (:func:`pipeline.segments.structures_from_config`), none missing."""
    if isinstance(structures, (str, Mapping)) or not len(structures):
        raise ValueError(f"structures must be a non-empty sequence of structures, got {structures!r}")
    return structures_from_config(structures)


def write_dicom_seg(
    mask: np.ndarray,
    source_datasets: Sequence[Dataset],
    path: str | os.PathLike,
    *,
    algorithm_name: str,
    algorithm_version: str,
    structures: Sequence[Structure | Mapping[str, Any]] | None = None,
    segment_label: str | None = None,
    segmented_property_category: Sequence[str] | Code | None = None,
    segmented_property_type: Sequence[str] | Code | None = None,
    display_color: Sequence[int] | None = None,
    series_description: str | None = None,
    series_number: int | None = None,
    manufacturer: str = "pipeline",
    device_serial_number: str = "0",
    content_label: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Path:
    """Write a binary DICOM SEG of ``mask`` over the source CT series, one segment per structure, atomically.

    Without ``structures``, ``mask`` is a binary mask and the SEG has one segment, which the single-segment arguments
    (``segment_label``, ``segmented_property_category``, ``segmented_property_type``, ``display_color``) describe.
    With ``structures``, ``mask`` is a label map in the structures' values and the SEG has one segment per structure,
    numbered 1..K in the order of their values, each with the structure's label, SNOMED CT codes and colour.

    Args:
        mask: (N, H, W) mask; plane ``k`` segments ``source_datasets[k]`` (H = Rows, W = Columns). Without
            ``structures``: bool or 0/1. With them: a label map whose values are 0 (background) or a structure's
            value (a bool mask for one structure of value 1).
        source_datasets: headers of the N source images, one series (PixelData may be absent or deferred).
        path: destination file.
        algorithm_name: the algorithm, e.g. the bundle's model name; also the SEG's ManufacturerModelName.
        algorithm_version: its version, e.g. the bundle version; also the SEG's SoftwareVersions.
        structures: what the label values of ``mask`` stand for (:class:`pipeline.segments.Structure`, or their
            dicts); ``None``: one segment, described by the single-segment arguments.
        segment_label: the one segment's label; default "Lung".
        segmented_property_category: ``(code, meaning)`` in SNOMED CT, ``(code, scheme, meaning)``, or a pydicom
            ``Code``; default SCT 91723000 "Anatomical Structure".
        segmented_property_type: same forms; default SCT 39607008 "Lung structure".
        display_color: recommended display colour, (R, G, B) in 0-255, written as RecommendedDisplayCIELabValue (3D
            Slicer and dcmqi show the segment in it); ``None`` leaves it out. Structures always have their colour.
        series_description: default ``"<segment labels> - research use only, not for clinical use"`` (the labels
            joined by commas, or ``"<K> segments"`` when they do not fit); a description without "not for clinical
            use" gets it appended (at most 64 characters in all).
        series_number: default the source SeriesNumber + 1000 (1000 when the source has none).
        manufacturer: the SEG's Manufacturer.
        device_serial_number: the SEG's DeviceSerialNumber (Type 1 in the SEG IOD).
        content_label: ContentLabel; default the one segment's label in upper case, e.g. "LUNG", and "SEGMENTATION"
            for several segments.
        series_instance_uid: default a new UID.
        sop_instance_uid: default a new UID.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: no source datasets, a mask whose shape does not match them, a mask that is not binary (without
            ``structures``) or holds a value no structure has, empty or repeated structures, structures together
            with a single-segment argument, bad codes, a series description over 64 characters; highdicom's
            ``ValueError`` for sources it refuses (mixed series, different sizes, missing geometry).
    """
    path = Path(path)
    segments = _segments(structures, segment_label, segmented_property_category, segmented_property_type, display_color)
    if structures is None:
        numbers = _binary_mask(mask, source_datasets)
    else:
        numbers = _segment_numbers(mask, source_datasets, [s.value for s in segments])
    if series_number is None:
        source_number = source_datasets[0].get("SeriesNumber")
        series_number = _SERIES_NUMBER_OFFSET + (int(source_number) if source_number not in (None, "") else 0)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=algorithm_version
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=segment.label,
            segmented_property_category=segment.category,
            segmented_property_type=segment.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=None if segment.color is None else hd.color.CIELabColor.from_rgb(*segment.color),
        )
        for number, segment in enumerate(segments, start=1)
    ]
    labels = [segment.label for segment in segments]
    if content_label is None:
        content_label = _content_label(labels[0]) if len(labels) == 1 else "SEGMENTATION"
    content_description = f"{algorithm_name} {algorithm_version}, {NOT_FOR_CLINICAL_USE}"
    if len(content_description) > _LO_MAX:
        content_description = f"automatic segmentation, {NOT_FOR_CLINICAL_USE}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PERSON_NAME_WARNING, category=UserWarning)
        seg = hd.seg.Segmentation(
            source_images=_repaired_sources(source_datasets),
            pixel_array=numbers,  # a label map of segment numbers: highdicom writes one binary frame per segment
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=int(series_number),
            sop_instance_uid=sop_instance_uid or hd.UID(),
            instance_number=1,
            manufacturer=manufacturer,
            manufacturer_model_name=algorithm_name,
            software_versions=algorithm_version,
            device_serial_number=device_serial_number,
            # highdicom reverts to all frames (with a log line) when every frame is empty; say so ourselves.
            omit_empty_frames=bool(numbers.any()),
            content_label=content_label,
            content_description=content_description,
            series_description=_series_description(series_description, labels),
        )
    with atomic_output(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    with_foreground, voxels = int(numbers.any(axis=(1, 2)).sum()), int(np.count_nonzero(numbers))
    if len(segments) == 1:
        logger.info(
            "wrote DICOM SEG %s: segment %r, %d of %d slices with foreground, %d voxels",
            path.name,
            labels[0],
            with_foreground,
            numbers.shape[0],
            voxels,
        )
    else:
        logger.info(
            "wrote DICOM SEG %s: %d segments (%s), %d of %d slices with foreground, %d voxels",
            path.name,
            len(segments),
            ", ".join(labels),
            with_foreground,
            numbers.shape[0],
            voxels,
        )
    return path


def read_dicom_seg(
    path: str | os.PathLike,
    source_datasets: Sequence[Dataset],
    structures: Sequence[Structure | Mapping[str, Any]] | None = None,
) -> np.ndarray:
    """Read a SEG back as a mask or label map aligned with ``source_datasets``.

    Args:
        path: a DICOM SEG file.
        source_datasets: headers of the source images whose planes are wanted, in the wanted order.
        structures: what the segments stand for, as given to :func:`write_dicom_seg`: segment ``k`` is the structure
            of the ``k``-th smallest value. ``None``: the segment numbers as they are.

    Returns:
        (N, H, W) uint8, plane ``k`` for ``source_datasets[k]``: 0 for background, else the structure's value (with
        ``structures``) or the segment number (without; 1 for a single-segment SEG). Sources whose frame was omitted
        as empty give zeros.

    Raises:
        ValueError: ``path`` is not a readable SEG, it does not reference some of the source instances, or it has
            another number of segments than ``structures``.
    """
    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as e:  # pydicom/highdicom raise InvalidDicomError, AttributeError, ValueError, OSError...
        raise ValueError(f"{path.name}: not a readable DICOM SEG ({type(e).__name__}: {e})") from e
    values = None
    if structures is not None:
        values = [s.value for s in _structures(structures)]
        numbers = sorted(int(item.SegmentNumber) for item in seg.SegmentSequence)
        if len(numbers) != len(values):
            raise ValueError(
                f"{path.name}: the SEG has {len(numbers)} segment(s), but {len(values)} structure(s) were given"
            )
    uids = [str(ds.SOPInstanceUID) for ds in source_datasets]
    referenced = {str(sop_uid) for _, _, sop_uid in seg.get_source_image_uids()}
    missing = [uid for uid in uids if uid not in referenced]
    if missing:
        raise ValueError(
            f"{path.name}: the SEG does not reference {len(missing)} of the {len(uids)} source instances "
            f"(first: {missing[0]}); it was made from another series"
        )
    pixels = np.asarray(
        seg.get_pixels_by_source_instance(
            uids, combine_segments=True, assert_missing_frames_are_empty=True, dtype=np.uint8
        ),
        dtype=np.uint8,
    )
    if values is None:
        return pixels
    lut = np.zeros(max(numbers) + 1, dtype=np.uint8)
    lut[numbers] = values
    return np.take(lut, pixels)


def run_dciodvfy(path: str | os.PathLike, timeout: float = 120.0) -> tuple[int, str] | None:
    """Validate a DICOM file against its IOD with dicom3tools' ``dciodvfy``.

    The text quotes attribute values, patient attributes included: keep it out of logs and reports as it is.

    Args:
        path: the DICOM file.
        timeout: seconds before ``dciodvfy`` is stopped.

    Returns:
        ``(number of lines starting with "Error", full stdout + stderr text)``, or ``None`` when ``dciodvfy`` is not
        installed.
    """
    exe = shutil.which("dciodvfy")
    if exe is None:
        return None
    result = subprocess.run([exe, os.fspath(path)], capture_output=True, text=True, timeout=timeout, check=False)
    text = result.stdout + result.stderr
    return sum(line.startswith("Error") for line in text.splitlines()), text
