"""DICOM Segmentation (SEG) objects for a predicted mask, through highdicom (reference.md section 4).

The SEG is a binary segmentation of the source CT series with one segment: it references every source instance,
names the segment with SNOMED CT codes and the algorithm by name and version (segment algorithm type AUTOMATIC),
and says in its series and content descriptions that it is not for clinical use. Slices without any foreground are
omitted (``omit_empty_frames``); an all-empty mask keeps every frame, because a SEG needs at least one.

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
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from pipeline.atomic import atomic_output

__all__ = ["NOT_FOR_CLINICAL_USE", "read_dicom_seg", "run_dciodvfy", "write_dicom_seg"]

logger = logging.getLogger("pipeline.outputs")

NOT_FOR_CLINICAL_USE = "not for clinical use"

# Long String (LO) and Code String (CS) limits of the description and label attributes.
_LO_MAX = 64
_CS_MAX = 16
# Series number of the SEG when none is given: the source series number plus this offset (1000 + 2 for series 2).
_SERIES_NUMBER_OFFSET = 1000
_PERSON_NAME_WARNING = ".*unlikely to represent the intended person name.*"


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


def _binary_mask(mask: np.ndarray, source_datasets: Sequence[Dataset]) -> np.ndarray:
    """Check that ``mask`` is (N, Rows, Columns) with only 0/1 values; return it as uint8."""
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
    integers_in_range = mask.dtype.kind in "iu" and (mask.size == 0 or (mask.min() >= 0 and mask.max() <= 1))
    if mask.dtype != bool and not integers_in_range:  # min and max: a fraction of np.unique's time on a series
        values = np.unique(mask)
        if not np.isin(values, (0, 1)).all():
            shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6 else "")
            raise ValueError(f"mask must be binary (0/1 or bool), got values {shown}")
    return mask.astype(np.uint8)


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


def _series_description(description: str | None, segment_label: str) -> str:
    """The series description, ending in "not for clinical use" and at most 64 characters (LO)."""
    if description is None:
        description = f"{segment_label} - research use only, {NOT_FOR_CLINICAL_USE}"
    if NOT_FOR_CLINICAL_USE not in description.lower():
        suffix = f" - {NOT_FOR_CLINICAL_USE}"
        description = description[: _LO_MAX - len(suffix)] + suffix
    if len(description) > _LO_MAX:
        raise ValueError(f"series_description must be at most {_LO_MAX} characters (LO), got {description!r}")
    return description


def _content_label(label: str) -> str:
    """``label`` as a valid Code String content label: upper case, A-Z 0-9 and underscore, at most 16 characters."""
    cleaned = re.sub(r"[^A-Z0-9_]+", "_", label.upper()).strip("_")[:_CS_MAX]
    return cleaned or "SEGMENTATION"


def write_dicom_seg(
    mask: np.ndarray,
    source_datasets: Sequence[Dataset],
    path: str | os.PathLike,
    *,
    algorithm_name: str,
    algorithm_version: str,
    segment_label: str = "Lung",
    segmented_property_category: Sequence[str] | Code = ("91723000", "Anatomical Structure"),
    segmented_property_type: Sequence[str] | Code = ("39607008", "Lung structure"),
    display_color: Sequence[int] | None = None,
    series_description: str | None = None,
    series_number: int | None = None,
    manufacturer: str = "pipeline",
    device_serial_number: str = "0",
    content_label: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Path:
    """Write a binary DICOM SEG of ``mask`` over the source CT series, atomically.

    Args:
        mask: (N, H, W) bool or 0/1 integer mask; plane ``k`` segments ``source_datasets[k]`` (H = Rows,
            W = Columns).
        source_datasets: headers of the N source images, one series (PixelData may be absent or deferred).
        path: destination file.
        algorithm_name: the algorithm, e.g. the bundle's model name; also the SEG's ManufacturerModelName.
        algorithm_version: its version, e.g. the bundle version; also the SEG's SoftwareVersions.
        segment_label: the segment's label.
        segmented_property_category: ``(code, meaning)`` in SNOMED CT, ``(code, scheme, meaning)``, or a pydicom
            ``Code``; default SCT 91723000 "Anatomical Structure".
        segmented_property_type: same forms; default SCT 39607008 "Lung structure".
        display_color: recommended display colour, (R, G, B) in 0-255, written as RecommendedDisplayCIELabValue (3D
            Slicer and dcmqi show the segment in it); ``None`` leaves it out.
        series_description: default ``"<segment_label> - research use only, not for clinical use"``; a description
            without "not for clinical use" gets it appended (at most 64 characters in all).
        series_number: default the source SeriesNumber + 1000 (1000 when the source has none).
        manufacturer: the SEG's Manufacturer.
        device_serial_number: the SEG's DeviceSerialNumber (Type 1 in the SEG IOD).
        content_label: ContentLabel; default ``segment_label`` in upper case, e.g. "LUNG".
        series_instance_uid: default a new UID.
        sop_instance_uid: default a new UID.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: no source datasets, a mask whose shape does not match them or that is not binary, bad codes,
            a series description over 64 characters; highdicom's ``ValueError`` for sources it refuses (mixed series,
            different sizes, missing geometry).
    """
    path = Path(path)
    mask = _binary_mask(mask, source_datasets)
    if series_number is None:
        source_number = source_datasets[0].get("SeriesNumber")
        series_number = _SERIES_NUMBER_OFFSET + (int(source_number) if source_number not in (None, "") else 0)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=algorithm_version
    )
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment_label,
        segmented_property_category=_coded_concept(segmented_property_category, "segmented_property_category"),
        segmented_property_type=_coded_concept(segmented_property_type, "segmented_property_type"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        display_color=None if display_color is None else hd.color.CIELabColor.from_rgb(*display_color),
    )
    content_description = f"{algorithm_name} {algorithm_version}, {NOT_FOR_CLINICAL_USE}"
    if len(content_description) > _LO_MAX:
        content_description = f"automatic segmentation, {NOT_FOR_CLINICAL_USE}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PERSON_NAME_WARNING, category=UserWarning)
        seg = hd.seg.Segmentation(
            source_images=_repaired_sources(source_datasets),
            pixel_array=mask,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[segment],
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=int(series_number),
            sop_instance_uid=sop_instance_uid or hd.UID(),
            instance_number=1,
            manufacturer=manufacturer,
            manufacturer_model_name=algorithm_name,
            software_versions=algorithm_version,
            device_serial_number=device_serial_number,
            # highdicom reverts to all frames (with a log line) when every frame is empty; say so ourselves.
            omit_empty_frames=bool(mask.any()),
            content_label=content_label or _content_label(segment_label),
            content_description=content_description,
            series_description=_series_description(series_description, segment_label),
        )
    with atomic_output(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    logger.info(
        "wrote DICOM SEG %s: segment %r, %d of %d slices with foreground, %d voxels",
        path.name,
        segment_label,
        int(mask.any(axis=(1, 2)).sum()),
        mask.shape[0],
        int(mask.sum(dtype=np.int64)),
    )
    return path


def read_dicom_seg(path: str | os.PathLike, source_datasets: Sequence[Dataset]) -> np.ndarray:
    """Read a SEG back as a mask aligned with ``source_datasets``.

    Args:
        path: a DICOM SEG file.
        source_datasets: headers of the source images whose planes are wanted, in the wanted order.

    Returns:
        (N, H, W) uint8 mask, plane ``k`` for ``source_datasets[k]``: 0 for background, else the segment number
        (1 for the single-segment SEGs ``write_dicom_seg`` writes). Sources whose frame was omitted as empty give
        zeros.

    Raises:
        ValueError: ``path`` is not a readable SEG, or it does not reference some of the source instances.
    """
    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as e:  # pydicom/highdicom raise InvalidDicomError, AttributeError, ValueError, OSError...
        raise ValueError(f"{path.name}: not a readable DICOM SEG ({type(e).__name__}: {e})") from e
    uids = [str(ds.SOPInstanceUID) for ds in source_datasets]
    referenced = {str(sop_uid) for _, _, sop_uid in seg.get_source_image_uids()}
    missing = [uid for uid in uids if uid not in referenced]
    if missing:
        raise ValueError(
            f"{path.name}: the SEG does not reference {len(missing)} of the {len(uids)} source instances "
            f"(first: {missing[0]}); it was made from another series"
        )
    pixels = seg.get_pixels_by_source_instance(
        uids, combine_segments=True, assert_missing_frames_are_empty=True, dtype=np.uint8
    )
    return np.asarray(pixels, dtype=np.uint8)


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
