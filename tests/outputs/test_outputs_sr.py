"""DICOM SR measurement report: one TID 1411 group per SEG segment with its volume, references to the SEG and the
source series, the document header, validation by dciodvfy (synthetic, demo and real studies), bad input, no PHI in
messages."""

from __future__ import annotations

import json
import logging
import shutil
import warnings

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from pipeline.demo.study import demo_study_truth, synthesize_ct_volume, write_demo_study
from pipeline.io.dicom_series import scan_dicom_folder
from pipeline.io.dicom_volume import load_series_volume
from pipeline.outputs import (
    NOT_FOR_CLINICAL_USE,
    InferenceWriter,
    mask_measurements,
    read_measurement_report,
    run_dciodvfy,
    segment_volumes,
    write_dicom_seg,
    write_measurement_report,
)
from pipeline.segments import SEGMENTS, structures_from_config, structures_from_labels

ALGORITHM = {"algorithm_name": "cenet", "algorithm_version": "0.1.0"}
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LUNG = [{"value": 1, "label": "Lung"}]
needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")


def _seg_and_sr(tmp_path, sources, mask, structures, **kwargs):
    """Write the SEG of ``mask`` and its SR from ``mask_measurements``; return (SEG path, SR path, measurements)."""
    seg = write_dicom_seg(mask, sources, tmp_path / "seg.dcm", structures=structures, **ALGORITHM)
    measured = mask_measurements(mask, (2.5, 0.7, 0.8), structures)
    measurements = {"segmented_volume_ml": measured["volume_ml"], **measured}
    sr = write_measurement_report(seg, sources, measurements, structures, tmp_path / "sr.dcm", **ALGORITHM, **kwargs)
    return seg, sr, measurements


def _items(item, name):
    """The content items under ``item`` named ``name`` (a pydicom Code), one level down."""
    return [
        child
        for child in item.ContentSequence
        if (child.ConceptNameCodeSequence[0].CodeValue, child.ConceptNameCodeSequence[0].CodingSchemeDesignator)
        == (name.value, name.scheme_designator)
    ]


def _groups(sr):
    (measurements,) = _items(sr, codes.DCM.ImagingMeasurements)
    return _items(measurements, codes.DCM.MeasurementGroup)


def test_content_tree_walked_by_hand(tmp_path, ct_volume, label_map, three_structures, ct_datasets):
    """The TID 1500 tree read with pydicom alone: templates, codes, units, references and values."""
    sources = ct_datasets(ct_volume)
    seg_path, sr_path, measurements = _seg_and_sr(tmp_path, sources, label_map, three_structures)
    seg, sr = pydicom.dcmread(seg_path), pydicom.dcmread(sr_path)
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert (sr.ConceptNameCodeSequence[0].CodeValue, sr.ConceptNameCodeSequence[0].CodeMeaning) == (
        "126000",
        "Imaging Measurement Report",
    )
    (procedure,) = _items(sr, codes.DCM.ProcedureReported)
    assert procedure.ConceptCodeSequence[0].CodeValue == "25045-6"  # LOINC "CT unspecified body region"
    (observer,) = _items(sr, codes.DCM.ObserverType)
    assert observer.ConceptCodeSequence[0].CodeMeaning == "Device"
    (device_name,) = _items(sr, codes.DCM.DeviceObserverName)
    assert device_name.TextValue == "cenet"

    groups = _groups(sr)
    assert len(groups) == 3  # one per structure
    for number, (group, structure, expected) in enumerate(
        zip(groups, three_structures, measurements["structures"], strict=True), start=1
    ):
        assert group.ContentTemplateSequence[0].TemplateIdentifier == "1411"
        (tracking,) = _items(group, codes.DCM.TrackingIdentifier)
        assert tracking.TextValue == structure.label
        (finding,) = _items(group, codes.DCM.Finding)
        assert finding.ConceptCodeSequence[0].CodeValue == structure.property_type[0]
        (volume,) = _items(group, codes.SCT.Volume)
        value = volume.MeasuredValueSequence[0]
        assert float(value.FloatingPointValue) == expected["volume_ml"]
        assert float(value.NumericValue) == pytest.approx(expected["volume_ml"], rel=1e-12)
        unit = value.MeasurementUnitsCodeSequence[0]
        assert (unit.CodeValue, unit.CodingSchemeDesignator) == ("ml", "UCUM")
        (segment,) = _items(group, codes.DCM.ReferencedSegment)
        reference = segment.ReferencedSOPSequence[0]
        assert (reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID) == (
            SEG_STORAGE,
            seg.SOPInstanceUID,
        )
        assert int(reference.ReferencedSegmentNumber) == number
        assert seg.SegmentSequence[number - 1].SegmentLabel == structure.label
        (series,) = _items(group, codes.DCM.SourceSeriesForSegmentation)
        assert str(series.UID) == sources[0].SeriesInstanceUID
        (algorithm,) = _items(group, codes.DCM.AlgorithmVersion)
        assert algorithm.TextValue == "0.1.0"


def test_highdicom_reads_the_report(tmp_path, ct_volume, label_map, three_structures, ct_datasets):
    sources = ct_datasets(ct_volume)
    seg_path, sr_path, measurements = _seg_and_sr(tmp_path, sources, label_map, three_structures)
    report = hd.sr.MeasurementReport.from_sequence(hd.sr.srread(sr_path).content)
    groups = report.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["Right lung", "Left lung", "Heart"]
    assert [g.get_measurements(name=codes.SCT.Volume)[0].value for g in groups] == [
        s["volume_ml"] for s in measurements["structures"]
    ]
    seg_uid = pydicom.dcmread(seg_path).SOPInstanceUID
    assert read_measurement_report(sr_path) == [
        {
            "label": s["label"],
            "segment_number": k,
            "seg_sop_instance_uid": seg_uid,
            "source_series_instance_uid": sources[0].SeriesInstanceUID,
            "volume_ml": s["volume_ml"],
        }
        for k, s in enumerate(measurements["structures"], start=1)
    ]


def test_document_header(tmp_path, ct_volume, lung_mask, ct_datasets):
    """Enhanced SR, sorted beside its SEG, the source's patient and study, evidence of the SEG and every source."""
    sources = ct_datasets(ct_volume, series_number=3)
    seg_path, sr_path, measurements = _seg_and_sr(tmp_path, sources, lung_mask, LUNG)
    seg, sr = pydicom.dcmread(seg_path), pydicom.dcmread(sr_path)
    assert (sr.SOPClassUID, sr.Modality) == (ENHANCED_SR, "SR")
    assert (sr.SeriesNumber, sr.InstanceNumber) == (seg.SeriesNumber, seg.InstanceNumber + 1) == (1003, 2)
    assert sr.SeriesInstanceUID not in (seg.SeriesInstanceUID, sources[0].SeriesInstanceUID)
    assert sr.SeriesDescription == f"Volumes: Lung - research use only, {NOT_FOR_CLINICAL_USE}"
    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == ("COMPLETE", "UNVERIFIED", "PRELIMINARY")
    assert (sr.ManufacturerModelName, sr.SoftwareVersions) == ("cenet", "0.1.0")
    for keyword in ("PatientName", "PatientID", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyID"):
        assert sr[keyword].value == sources[0][keyword].value, keyword
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert evidence == {seg.SOPInstanceUID, *(ds.SOPInstanceUID for ds in sources)}
    assert [v["volume_ml"] for v in read_measurement_report(sr_path)] == [measurements["segmented_volume_ml"]]


OPTION_CASES = [
    # (kwargs, attribute, expected)
    ({"series_description": "Lung volume"}, "SeriesDescription", f"Lung volume - {NOT_FOR_CLINICAL_USE}"),
    ({"series_number": 77}, "SeriesNumber", 77),
    ({"instance_number": 5}, "InstanceNumber", 5),
    ({"series_instance_uid": "1.2.3.4"}, "SeriesInstanceUID", "1.2.3.4"),
    ({"sop_instance_uid": "1.2.3.5"}, "SOPInstanceUID", "1.2.3.5"),
    ({"manufacturer": "lab"}, "Manufacturer", "lab"),
]


@pytest.mark.parametrize(("kwargs", "attribute", "expected"), OPTION_CASES)
def test_options(tmp_path, ct_volume, lung_mask, ct_datasets, kwargs, attribute, expected):
    _, sr_path, _ = _seg_and_sr(tmp_path, ct_datasets(ct_volume), lung_mask, LUNG, **kwargs)
    assert pydicom.dcmread(sr_path)[attribute].value == expected


def test_long_labels_keep_the_description_short(tmp_path, ct_volume, label_map, ct_datasets):
    structures = structures_from_labels({"1": "right upper lobe of the lung", "2": "left lung", "3": "heart muscle"})
    _, sr_path, _ = _seg_and_sr(tmp_path, ct_datasets(ct_volume), label_map, structures)
    assert pydicom.dcmread(sr_path).SeriesDescription == f"Volumes - research use only, {NOT_FOR_CLINICAL_USE}"


def test_sparse_values_and_absent_structure(tmp_path, ct_volume, label_map, ct_datasets):
    """Values 1, 4, 7 are segments 1, 2, 3; a structure absent from the mask has volume 0 and its group still."""
    structures = structures_from_labels({"1": "liver", "4": "spleen", "7": "tumour core"})
    labels = np.take(np.array([0, 1, 4, 0], np.uint8), label_map)  # the heart (3) becomes background: no value 7
    _, sr_path, measurements = _seg_and_sr(tmp_path, ct_datasets(ct_volume), labels, structures)
    found = read_measurement_report(sr_path)
    assert [(v["label"], v["segment_number"]) for v in found] == [("Liver", 1), ("Spleen", 2), ("Tumour core", 3)]
    assert [v["volume_ml"] for v in found] == [s["volume_ml"] for s in measurements["structures"]]
    assert found[2]["volume_ml"] == 0.0


VOLUME_CASES = [
    # (name, measurements, structures, expected volumes)
    ("binary", {"segmented_volume_ml": 12.5}, LUNG, [12.5]),
    (
        "several_out_of_order",
        {"segmented_volume_ml": 9.0, "structures": [{"value": 2, "volume_ml": 4.0}, {"value": 1, "volume_ml": 5.0}]},
        [{"value": 2, "label": "B"}, {"value": 1, "label": "A"}],
        [5.0, 4.0],
    ),
]


@pytest.mark.parametrize(
    ("name", "measurements", "structures", "expected"), VOLUME_CASES, ids=[c[0] for c in VOLUME_CASES]
)
def test_segment_volumes(name, measurements, structures, expected):
    assert segment_volumes(measurements, structures) == expected


BAD_CASES = [
    # (name, builder of (seg, sources, measurements, structures, kwargs), message)
    ("no_sources", lambda seg, src, tmp: (seg, [], {"segmented_volume_ml": 1.0}, LUNG, {}), "source_datasets is empty"),
    (
        "two_series",
        lambda seg, src, tmp: (seg, [*src[:2], _other_series(src[2])], {"segmented_volume_ml": 1.0}, LUNG, {}),
        "one series",
    ),
    ("not_a_seg", lambda seg, src, tmp: (src[0], src, {"segmented_volume_ml": 1.0}, LUNG, {}), "not a DICOM SEG"),
    ("unreadable", lambda seg, src, tmp: (_text_file(tmp), src, {"segmented_volume_ml": 1.0}, LUNG, {}), "readable"),
    (
        "other_segments",
        lambda seg, src, tmp: (seg, src, {"segmented_volume_ml": 1.0}, [{"value": 1, "label": "Liver"}], {}),
        "are not the structures",
    ),
    ("no_volume", lambda seg, src, tmp: (seg, src, {"segmented_voxels": 3}, LUNG, {}), "no volume for structure"),
    (
        "long_description",
        lambda seg, src, tmp: (
            seg,
            src,
            {"segmented_volume_ml": 1.0},
            LUNG,
            {"series_description": "x" * 50 + NOT_FOR_CLINICAL_USE},
        ),
        "at most 64",
    ),
]


def _other_series(ds):
    ds = pydicom.Dataset(ds)
    ds.SeriesInstanceUID = "1.2.3.999"
    return ds


def _text_file(tmp_path):
    (tmp_path / "notes.dcm").write_text("not DICOM")
    return tmp_path / "notes.dcm"


@pytest.mark.parametrize(("name", "build", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input(tmp_path, ct_volume, lung_mask, ct_datasets, name, build, message):
    sources = ct_datasets(ct_volume)
    seg = write_dicom_seg(lung_mask, sources, tmp_path / "seg.dcm", **ALGORITHM)
    seg, sources, measurements, structures, kwargs = build(seg, sources, tmp_path)
    with pytest.raises(ValueError, match=message):
        write_measurement_report(seg, sources, measurements, structures, tmp_path / "sr.dcm", **ALGORITHM, **kwargs)
    assert not (tmp_path / "sr.dcm").exists()


def test_read_refuses_a_non_report(tmp_path, ct_volume, lung_mask, ct_datasets):
    seg = write_dicom_seg(lung_mask, ct_datasets(ct_volume), tmp_path / "seg.dcm", **ALGORITHM)
    with pytest.raises(ValueError, match=r"seg\.dcm: not a readable TID 1500 measurement report"):
        read_measurement_report(seg)


def test_no_patient_name_in_logs_or_warnings(tmp_path, ct_volume, lung_mask, ct_datasets, caplog):
    sources = ct_datasets(ct_volume, patient_name="SECRETNAME", tag="phi")  # one component: highdicom would warn
    folder = tmp_path / "private_folder_SECRETNAME"
    seg = write_dicom_seg(lung_mask, sources, folder / "seg.dcm", **ALGORITHM)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_measurement_report(seg, sources, {"segmented_volume_ml": 1.0}, LUNG, folder / "sr.dcm", **ALGORITHM)
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert any("sr.dcm: Lung 1.0 mL" in m for m in messages)
    assert not [m for m in messages if "SECRETNAME" in m]
    assert pydicom.dcmread(folder / "sr.dcm").PatientName == "SECRETNAME"  # the patient module, as the SEG's


# ---------------------------------------------------------------------------------------------------- validation
def _validate(path) -> str:
    errors, text = run_dciodvfy(path)
    assert errors == 0, text
    return text


def _warnings(text: str) -> set[str]:
    return {line for line in text.splitlines() if line.startswith("Warning")}


@needs_dciodvfy
@pytest.mark.parametrize("case", ["binary", "three", "empty"])
def test_dciodvfy_reports_no_error(tmp_path, ct_volume, lung_mask, label_map, three_structures, ct_datasets, case):
    mask, structures = {
        "binary": (lung_mask, LUNG),
        "three": (label_map, three_structures),
        "empty": (np.zeros_like(label_map), three_structures),
    }[case]
    seg, sr, _ = _seg_and_sr(tmp_path, ct_datasets(ct_volume), mask, structures)
    assert _warnings(_validate(sr)) <= _warnings(_validate(seg))  # the same kind as the SEG, if any


@needs_dciodvfy
def test_dciodvfy_catches_a_broken_report(tmp_path, ct_volume, lung_mask, ct_datasets):
    _, sr_path, _ = _seg_and_sr(tmp_path, ct_datasets(ct_volume), lung_mask, LUNG)
    sr = pydicom.dcmread(sr_path)
    del sr.CompletionFlag  # Type 1 in the SR Document General module
    sr.save_as(tmp_path / "broken.dcm", enforce_file_format=True)
    errors, text = run_dciodvfy(tmp_path / "broken.dcm")
    assert errors >= 1 and "CompletionFlag" in text


@needs_dciodvfy
def test_demo_study_through_the_writer(tmp_path):
    """The demo study's sharp series with the phantom's own label map as the prediction, through the series writer:
    sr.dcm beside seg.dcm, valid, its volumes report.json's and the phantom's truth."""
    root = write_demo_study(tmp_path / "study", size=64, num_slices=6)
    series = next(s for s in scan_dicom_folder(root)[0] if s.description == "Thorax 8.0 B70f")
    volume = load_series_volume(series)
    _, labels = synthesize_ct_volume(64, 6)  # instance 1 (array plane 0 of the phantom) is the most superior
    z = [float(ds.ImagePositionPatient[2]) for ds in volume.datasets]
    labels = labels[::-1] if z[0] < z[-1] else labels
    structures = structures_from_labels({"0": "background", "1": "right lung", "2": "left lung", "3": "heart"})
    measured = mask_measurements(labels, volume.spacing, structures)
    measurements = {
        "segmented_volume_ml": measured["volume_ml"],
        "volume_before_postprocessing_ml": measured["volume_ml"],
        "structures": measured["structures"],
        "timings": {"read_s": 0.0, "model_forward_s": 0.0},
    }
    writer = InferenceWriter(tmp_path / "out", SEGMENTS["lung"], structures=structures, **ALGORITHM)
    report = writer.write_series(series, volume, np.ascontiguousarray(labels), measurements)

    folder = tmp_path / "out" / series.study_label / series.label
    assert report["outputs"] == ["seg.dcm", "sr.dcm", "labels.nii.gz", "overlay.png", "report.json"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(report["outputs"])
    written = json.loads((folder / "report.json").read_text())
    assert "write_sr_s" in written["timings"]
    found = read_measurement_report(folder / "sr.dcm")
    assert [v["volume_ml"] for v in found] == [s["volume_ml"] for s in written["structures"]]
    truth = demo_study_truth(root)["Thorax 8.0 B70f"]
    assert [v["volume_ml"] for v in found] == pytest.approx([truth[s.label.lower()]["volume_ml"] for s in structures])
    seg = pydicom.dcmread(folder / "seg.dcm")
    assert {v["seg_sop_instance_uid"] for v in found} == {seg.SOPInstanceUID}
    assert {v["source_series_instance_uid"] for v in found} == {series.series_uid}
    assert not _warnings(_validate(folder / "sr.dcm"))


@needs_dciodvfy
def test_real_series(tmp_path, real_lung_series):
    datasets, mask = real_lung_series
    mask = mask.astype(np.uint8)
    structures = structures_from_config(LUNG)
    seg = write_dicom_seg(mask, datasets, tmp_path / "seg.dcm", structures=structures, **ALGORITHM)
    spacing = (float(datasets[0].SliceThickness), *(float(v) for v in datasets[0].PixelSpacing))
    volume_ml = mask_measurements(mask, spacing)["volume_ml"]
    sr = write_measurement_report(
        seg, datasets, {"segmented_volume_ml": volume_ml}, structures, tmp_path / "sr.dcm", **ALGORITHM
    )
    (found,) = read_measurement_report(sr)
    assert found["volume_ml"] == volume_ml and found["source_series_instance_uid"] == datasets[0].SeriesInstanceUID
    assert _warnings(_validate(sr)) <= _warnings(_validate(seg))
