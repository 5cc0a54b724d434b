"""DICOM Structured Report (SR) of the segmented volumes, a TID 1500 measurement report, through highdicom.

A PACS viewer shows ``report.json`` to no one; it does show an SR. The report holds one TID 1411 "Volumetric ROI
Measurements and Qualitative Evaluations" group per segment of the SEG written beside it: the group references the
segment (the SEG's SOP Class and Instance UID and the segment number) and the source series it was made from, names
the structure with the SEG's SNOMED CT codes (finding category and type), and holds its volume in millilitres (SCT
118565006 "Volume", UCUM ``ml``), measured by the same algorithm (TID 4019) that the device observer (TID 1004) names.

Only the segments' volumes are reported. ``report.json``'s other numbers describe other things: the volume before
clean-up measures a mask that is not in the SEG (a viewer would show it as a second volume of the same segment), the
voxel count and per-slice areas repeat the volume in other units, and the total over several structures is not
meaningful for every set of structures (lungs and heart).

The document is an Enhanced SR: its content is numbers, codes, UIDs and image references, with no 3D coordinates, so
the Comprehensive 3D SR IOD is not needed; Enhanced SR is the narrowest SR IOD that holds this TID 1500 report, and
the older one (archives and viewers that predate Comprehensive 3D SR store and show it). It is complete, preliminary
and unverified, and its series description says "not for clinical use".

The SR copies the patient and study attributes of the SEG (which copied them from the source images), as the standard
requires; nothing patient-identifying is logged.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from pipeline.atomic import atomic_output
from pipeline.outputs.dicom_seg import series_description
from pipeline.segments import Structure, structures_from_config

__all__ = ["read_measurement_report", "segment_volumes", "write_measurement_report"]

logger = logging.getLogger("pipeline.outputs")

# UCUM millilitre, the unit of CID 7181 for volumes.
MILLILITER = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
_PERSON_NAME_WARNING = ".*unlikely to represent the intended person name.*"
# The procedure reported (TID 1500 row 4, CID 100) by the source modality; any other modality: "Imaging procedure".
_PROCEDURES = {
    "CT": codes.cid100.CTUnspecifiedBodyRegion,
    "MR": codes.cid100.MRIUnspecifiedBodyRegion,
    "PT": codes.cid100.PETUnspecifiedBodyRegion,
    "NM": codes.cid100.NMUnspecifiedBodyRegion,
    "CR": codes.cid100.XRUnspecifiedBodyRegion,
    "DX": codes.cid100.XRUnspecifiedBodyRegion,
}


def segment_volumes(
    measurements: Mapping[str, Any], structures: Sequence[Structure | Mapping[str, Any]]
) -> list[float]:
    """Each structure's volume in mL from ``report.json``'s measurements, in the structures' value order.

    Args:
        measurements: the runner's measurements as ``report.json`` holds them: ``structures`` (one ``{"value",
            "volume_ml", ...}`` per structure) for several structures, ``segmented_volume_ml`` for one.
        structures: what the label values stand for.

    Returns:
        One volume per structure, sorted by value (the SEG's segment order).

    Raises:
        ValueError: a structure without a volume in ``measurements``.
    """
    parsed = structures_from_config(structures)
    listed = {int(s["value"]): float(s["volume_ml"]) for s in measurements.get("structures") or ()}
    if not listed and len(parsed) == 1 and "segmented_volume_ml" in measurements:
        return [float(measurements["segmented_volume_ml"])]
    missing = [s.label for s in parsed if s.value not in listed]
    if missing:
        raise ValueError(f"the measurements have no volume for structure(s) {missing}")
    return [listed[s.value] for s in parsed]


def _series_description(description: str | None, labels: Sequence[str]) -> str:
    """The SR's series description (:func:`~pipeline.outputs.dicom_seg.series_description`): ``"Volumes: <labels> -
    research use only, not for clinical use"``, or ``"Volumes - ..."`` when the labels do not fit."""
    return series_description(description, f"Volumes: {', '.join(labels)}", "Volumes")


def _read_seg(seg: Dataset | str | os.PathLike) -> Dataset:
    if isinstance(seg, Dataset):
        return seg
    try:
        return pydicom.dcmread(seg, stop_before_pixels=True)
    except Exception as e:  # InvalidDicomError, OSError...
        raise ValueError(f"{Path(seg).name}: not a readable DICOM file ({type(e).__name__}: {e})") from e


def _segment_numbers(seg: Dataset, structures: Sequence[Structure]) -> list[int]:
    """The SEG's segment number of each structure: segment ``k`` is the ``k``-th structure by value, as
    :func:`~pipeline.outputs.dicom_seg.write_dicom_seg` writes them; the labels must agree.

    Raises:
        ValueError: ``seg`` is not a SEG, or its segments are not the structures.
    """
    if seg.get("Modality") != "SEG" or "SegmentSequence" not in seg:
        raise ValueError(f"the referenced object is not a DICOM SEG (modality {seg.get('Modality')!r})")
    segments = sorted(seg.SegmentSequence, key=lambda item: int(item.SegmentNumber))
    labels = [str(item.SegmentLabel) for item in segments]
    if labels != [s.label for s in structures]:
        raise ValueError(f"the SEG's segments {labels} are not the structures {[s.label for s in structures]}")
    return [int(item.SegmentNumber) for item in segments]


def _procedure(modality: str | None) -> hd.sr.CodedConcept:
    code = _PROCEDURES.get(str(modality or ""), codes.cid100.ImagingProcedure)
    return hd.sr.CodedConcept.from_code(code)


def write_measurement_report(
    seg: Dataset | str | os.PathLike,
    source_datasets: Sequence[Dataset],
    measurements: Mapping[str, Any],
    structures: Sequence[Structure | Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    algorithm_name: str,
    algorithm_version: str,
    series_description: str | None = None,
    series_number: int | None = None,
    instance_number: int | None = None,
    manufacturer: str = "pipeline",
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Path:
    """Write an Enhanced SR holding a TID 1500 measurement report of each segment's volume, atomically.

    Args:
        seg: the SEG the report measures (a dataset, or its file), as
            :func:`~pipeline.outputs.dicom_seg.write_dicom_seg` wrote it from ``source_datasets`` and ``structures``.
        source_datasets: headers of the segmented images, one series (PixelData may be absent); they are the report's
            evidence beside the SEG, and each group names their series as the segment's source.
        measurements: ``report.json``'s measurements (:func:`segment_volumes`).
        structures: what the SEG's segments stand for, segment ``k`` the structure of the ``k``-th smallest value.
        path: destination file.
        algorithm_name: the algorithm (the bundle's model name): the device observer, the measuring algorithm, the
            ManufacturerModelName; the same as the SEG's.
        algorithm_version: its version: likewise, and SoftwareVersions.
        series_description: default ``"Volumes: <labels> - research use only, not for clinical use"`` (``"Volumes -
            ..."`` when the labels do not fit); a description without "not for clinical use" gets it appended.
        series_number: default the SEG's series number, so that a study listed by series number shows the SR beside
            its SEG (an SR cannot join the SEG's series: a series holds one modality).
        instance_number: default the SEG's instance number + 1, so that the SR follows its SEG in instance order.
        manufacturer: the SR's Manufacturer and the device observer's manufacturer.
        series_instance_uid: default a new UID.
        sop_instance_uid: default a new UID.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: no source datasets, sources from more than one series, a ``seg`` that is not a readable SEG of
            these structures, a structure without a volume in ``measurements``, a series description over 64
            characters; highdicom's ``ValueError`` for evidence it refuses (a SEG of another study).
    """
    path = Path(path)
    if not source_datasets:
        raise ValueError("source_datasets is empty: the report references the series the SEG was made from")
    series_uids = {str(ds.SeriesInstanceUID) for ds in source_datasets}
    if len(series_uids) != 1:
        raise ValueError(f"source_datasets must be one series, got {len(series_uids)} series")
    seg = _read_seg(seg)
    parsed = structures_from_config(structures)
    numbers = _segment_numbers(seg, parsed)
    volumes = segment_volumes(measurements, parsed)
    (source_series,) = series_uids

    algorithm = hd.sr.AlgorithmIdentification(
        name=algorithm_name, version=algorithm_version, family=codes.cid7162.ArtificialIntelligence
    )
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        # one UID per algorithm version: the same device in every report it makes
        uid=generate_uid(entropy_srcs=["pipeline device observer", algorithm_name, algorithm_version]),
        name=algorithm_name,
        manufacturer_name=manufacturer,
        model_name=f"{algorithm_name} {algorithm_version}",
    )
    observation_context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.cid270.Device, observer_identifying_attributes=device
        )
    )
    groups = [
        hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=structure.label),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=str(seg.SOPClassUID),
                sop_instance_uid=str(seg.SOPInstanceUID),
                segment_number=number,
                source_series=hd.sr.SourceSeriesForSegmentation(source_series),
            ),
            finding_category=_sct(structure.category),
            finding_type=_sct(structure.property_type),
            algorithm_id=algorithm,
            measurements=[hd.sr.Measurement(name=codes.SCT.Volume, value=volume, unit=MILLILITER)],
        )
        for structure, number, volume in zip(parsed, numbers, volumes, strict=True)
    ]
    report = hd.sr.MeasurementReport(
        observation_context=observation_context,
        procedure_reported=_procedure(source_datasets[0].get("Modality")),
        imaging_measurements=groups,
    )
    labels = [s.label for s in parsed]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PERSON_NAME_WARNING, category=UserWarning)
        sr = hd.sr.EnhancedSR(
            # the SEG first: the SR copies its patient and study modules, which the SEG copied from the sources
            evidence=[seg, *source_datasets],
            content=report[0],
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=int(seg.get("SeriesNumber") or 1) if series_number is None else int(series_number),
            sop_instance_uid=sop_instance_uid or hd.UID(),
            instance_number=int(seg.get("InstanceNumber") or 0) + 1 if instance_number is None else instance_number,
            manufacturer=manufacturer,
            is_complete=True,
            is_final=False,
            is_verified=False,
            series_description=_series_description(series_description, labels),
            manufacturer_model_name=algorithm_name,
            software_versions=algorithm_version,
        )
    with atomic_output(path) as tmp:
        sr.save_as(tmp, enforce_file_format=True)
    logger.info(
        "wrote DICOM SR %s: %s",
        path.name,
        ", ".join(f"{label} {volume:.1f} mL" for label, volume in zip(labels, volumes, strict=True)),
    )
    return path


def _sct(code: Sequence[str]) -> hd.sr.CodedConcept:
    """A structure's ``(value, meaning)`` SNOMED CT pair as a coded concept, as the SEG codes it."""
    value, meaning = code
    return hd.sr.CodedConcept(str(value), "SCT", str(meaning))


def read_measurement_report(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The volumes of a measurement report :func:`write_measurement_report` wrote, one per measurement group.

    Args:
        path: the SR file.

    Returns:
        One ``{"label", "segment_number", "seg_sop_instance_uid", "source_series_instance_uid", "volume_ml"}`` per
        group, in document order: the tracking identifier, the referenced segment and SEG, the source series, and
        the volume in mL.

    Raises:
        ValueError: ``path`` is not a readable SR, or a group has no volume in mL or no referenced segment.
    """
    path = Path(path)
    try:
        report = hd.sr.MeasurementReport.from_sequence(hd.sr.srread(path).content)
    except Exception as e:  # pydicom/highdicom raise InvalidDicomError, AttributeError, ValueError, OSError...
        raise ValueError(f"{path.name}: not a readable TID 1500 measurement report ({type(e).__name__}: {e})") from e
    found = []
    for group in report.get_volumetric_roi_measurement_groups():
        segment = group.referenced_segment or []
        references = [item for item in segment if item.name == codes.DCM.ReferencedSegment]
        series = [str(item.value) for item in segment if item.name == codes.DCM.SourceSeriesForSegmentation]
        volumes = [m for m in group.get_measurements(name=codes.SCT.Volume) if m.unit == MILLILITER]
        if len(references) != 1 or len(volumes) != 1:
            raise ValueError(f"{path.name}: a measurement group lacks its referenced segment or its volume in mL")
        reference = references[0].ReferencedSOPSequence[0]
        found.append(
            {
                "label": group.tracking_identifier,
                "segment_number": int(reference.ReferencedSegmentNumber),
                "seg_sop_instance_uid": str(reference.ReferencedSOPInstanceUID),
                "source_series_instance_uid": series[0] if series else None,
                "volume_ml": float(volumes[0].value),
            }
        )
    return found
