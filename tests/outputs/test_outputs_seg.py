"""DICOM SEG writing: round trip, references, labelling, validation by dciodvfy, bad input, no PHI in messages; one
segment per structure for a label map of several."""

from __future__ import annotations

import logging
import shutil
import time
import warnings

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.coding import Code

from pipeline.outputs import NOT_FOR_CLINICAL_USE, read_dicom_seg, run_dciodvfy, write_dicom_seg
from pipeline.segments import SEGMENTS, Structure, structures_from_config, structures_from_labels

ALGORITHM = {"algorithm_name": "cenet", "algorithm_version": "0.1.0"}
needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")


def _blob(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) > 0.7).astype(np.uint8)


def _single_voxel(shape: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[-1, shape[1] - 1, 0] = True
    return mask


ROUND_TRIP_CASES = [
    # (name, shape (N, H, W), mask builder)
    ("random", (3, 32, 32), lambda s: _blob(s, 1)),
    ("non_square", (3, 16, 24), lambda s: _blob(s, 2)),
    ("one_slice", (1, 32, 32), lambda s: _blob(s, 3)),
    ("single_voxel_bool", (3, 32, 32), _single_voxel),
    ("full", (2, 16, 16), lambda s: np.ones(s, dtype=np.uint8)),
    ("empty", (3, 32, 32), lambda s: np.zeros(s, dtype=np.uint8)),
    ("float_0_1", (3, 32, 32), lambda s: _blob(s, 4).astype(np.float32)),
]


@pytest.mark.parametrize(("name", "shape", "build"), ROUND_TRIP_CASES, ids=[c[0] for c in ROUND_TRIP_CASES])
def test_round_trip(tmp_path, ct_datasets, name, shape, build):
    mask = build(shape)
    sources = ct_datasets(np.zeros(shape, dtype=np.float32), tag=name)
    path = write_dicom_seg(mask, sources, tmp_path / "seg.dcm", **ALGORITHM)
    back = read_dicom_seg(path, sources)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, np.asarray(mask).astype(np.uint8))
    seg = pydicom.dcmread(path)
    expected_frames = shape[0] if not np.any(mask) else int(np.any(mask, axis=(1, 2)).sum())
    assert int(seg.NumberOfFrames) == expected_frames  # empty frames omitted, except when all are empty


def test_read_in_other_order(tmp_path, ct_volume, lung_mask, ct_datasets):
    sources = ct_datasets(ct_volume)
    path = write_dicom_seg(lung_mask, sources, tmp_path / "seg.dcm", **ALGORITHM)
    np.testing.assert_array_equal(read_dicom_seg(path, sources[::-1]), lung_mask[::-1])


def test_references_labels_and_descriptions(tmp_path, ct_volume, lung_mask, ct_datasets):
    sources = ct_datasets(ct_volume, series_number=3)
    seg = pydicom.dcmread(write_dicom_seg(lung_mask, sources, tmp_path / "seg.dcm", **ALGORITHM))
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.SeriesInstanceUID != sources[0].SeriesInstanceUID
    assert seg.SeriesNumber == 1003  # source series 3 + 1000
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == {ds.SOPInstanceUID for ds in sources}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    # every frame names the source slice it segments, and sits where that slice is
    by_uid = {ds.SOPInstanceUID: ds for ds in sources}
    frame_sources = []
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = by_uid[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        np.testing.assert_allclose(
            [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
            [float(v) for v in source.ImagePositionPatient],
        )
        frame_sources.append(source.SOPInstanceUID)
    assert sorted(frame_sources) == sorted([sources[1].SOPInstanceUID, sources[2].SOPInstanceUID])
    assert NOT_FOR_CLINICAL_USE in seg.SeriesDescription.lower()
    assert NOT_FOR_CLINICAL_USE in seg.ContentDescription.lower()
    assert seg.ContentLabel == "LUNG"
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "Lung"
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentAlgorithmName == "cenet"
    category, prop = segment.SegmentedPropertyCategoryCodeSequence[0], segment.SegmentedPropertyTypeCodeSequence[0]
    assert (category.CodeValue, category.CodingSchemeDesignator, category.CodeMeaning) == (
        "91723000",
        "SCT",
        "Anatomical Structure",
    )
    assert (prop.CodeValue, prop.CodingSchemeDesignator, prop.CodeMeaning) == ("39607008", "SCT", "Lung structure")
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("cenet", "0.1.0")
    assert (seg.ManufacturerModelName, seg.SoftwareVersions) == ("cenet", "0.1.0")


OPTION_CASES = [
    # (kwargs, attribute, expected)
    ({"series_description": "Lung mask"}, "SeriesDescription", f"Lung mask - {NOT_FOR_CLINICAL_USE}"),
    ({"series_description": "x" * 80}, "SeriesDescription", "x" * 41 + f" - {NOT_FOR_CLINICAL_USE}"),
    ({"series_description": "Research: Not for clinical use"}, "SeriesDescription", "Research: Not for clinical use"),
    ({"segment_label": "Left lung"}, "ContentLabel", "LEFT_LUNG"),
    ({"content_label": "LUNGS"}, "ContentLabel", "LUNGS"),
    ({"series_number": 77}, "SeriesNumber", 77),
    ({"series_instance_uid": "1.2.3.4"}, "SeriesInstanceUID", "1.2.3.4"),
    ({"sop_instance_uid": "1.2.3.5"}, "SOPInstanceUID", "1.2.3.5"),
    ({"manufacturer": "lab"}, "Manufacturer", "lab"),
]


def test_display_colour_is_written_as_cielab(tmp_path, ct_volume, lung_mask, ct_datasets):
    """dcmqi and 3D Slicer read RecommendedDisplayCIELabValue; without it they fall back to a default colour."""
    path = write_dicom_seg(
        lung_mask, ct_datasets(ct_volume), tmp_path / "s.dcm", **ALGORITHM, display_color=(216, 101, 79)
    )
    lab = pydicom.dcmread(path).SegmentSequence[0].RecommendedDisplayCIELabValue
    assert np.allclose(hd.color.CIELabColor.from_dicom_value(lab).to_rgb(), (216, 101, 79), atol=1)


@pytest.mark.parametrize(("kwargs", "attribute", "expected"), OPTION_CASES)
def test_options(tmp_path, ct_volume, lung_mask, ct_datasets, kwargs, attribute, expected):
    seg = pydicom.dcmread(write_dicom_seg(lung_mask, ct_datasets(ct_volume), tmp_path / "s.dcm", **ALGORITHM, **kwargs))
    assert seg[attribute].value == expected


@pytest.mark.parametrize(
    "code",
    [("10200004", "SCT", "Liver"), Code("10200004", "SCT", "Liver"), ("10200004", "Liver")],
    ids=["triple", "pydicom_code", "pair_implies_sct"],
)
def test_property_code_forms(tmp_path, ct_volume, lung_mask, ct_datasets, code):
    path = write_dicom_seg(
        lung_mask, ct_datasets(ct_volume), tmp_path / "s.dcm", segmented_property_type=code, **ALGORITHM
    )
    prop = pydicom.dcmread(path).SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]
    assert (prop.CodeValue, prop.CodingSchemeDesignator, prop.CodeMeaning) == ("10200004", "SCT", "Liver")


BAD_CASES = [
    # (name, mask or builder, n sources, kwargs, message fragment)
    ("shape_mismatch", np.zeros((3, 16, 32), np.uint8), 3, {}, "does not match the source series"),
    ("too_few_planes", np.zeros((2, 32, 32), np.uint8), 3, {}, "does not match the source series"),
    ("two_dimensional", np.zeros((32, 32), np.uint8), 1, {}, "does not match the source series"),
    ("not_binary", np.full((3, 32, 32), 2, np.uint8), 3, {}, "must be binary"),
    ("probabilities", np.full((3, 32, 32), 0.5, np.float32), 3, {}, "must be binary"),
    ("no_sources", np.zeros((0, 32, 32), np.uint8), 0, {}, "source_datasets is empty"),
    ("bad_code", np.zeros((3, 32, 32), np.uint8), 3, {"segmented_property_type": ("1",)}, "segmented_property_type"),
    ("bad_code_str", np.zeros((3, 32, 32), np.uint8), 3, {"segmented_property_category": "91723000"}, "category"),
]


@pytest.mark.parametrize(("name", "mask", "n", "kwargs", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input(tmp_path, ct_datasets, name, mask, n, kwargs, message):
    sources = ct_datasets(np.zeros((n, 32, 32), np.float32), tag=name) if n else []
    with pytest.raises(ValueError, match=message):
        write_dicom_seg(mask, sources, tmp_path / "seg.dcm", **ALGORITHM, **kwargs)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_sources_from_two_series_refused(tmp_path, ct_volume, lung_mask, ct_datasets):
    sources = ct_datasets(ct_volume[:2], tag="a") + ct_datasets(ct_volume[2:], tag="b")
    with pytest.raises(ValueError):
        write_dicom_seg(lung_mask, sources, tmp_path / "seg.dcm", **ALGORITHM)


def test_read_refuses_other_series_and_non_dicom(tmp_path, ct_volume, lung_mask, ct_datasets):
    path = write_dicom_seg(lung_mask, ct_datasets(ct_volume), tmp_path / "seg.dcm", **ALGORITHM)
    with pytest.raises(ValueError, match=r"seg\.dcm: the SEG does not reference 3 of the 3 source instances"):
        read_dicom_seg(path, ct_datasets(ct_volume, tag="other"))
    junk = tmp_path / "notes.txt"
    junk.write_text("not DICOM")
    with pytest.raises(ValueError, match=r"^notes\.txt: not a readable DICOM SEG"):
        read_dicom_seg(junk, ct_datasets(ct_volume))


def test_atomic_replace(tmp_path, ct_volume, lung_mask, ct_datasets):
    path = tmp_path / "out" / "seg.dcm"
    sources = ct_datasets(ct_volume)
    write_dicom_seg(lung_mask, sources, path, **ALGORITHM)
    write_dicom_seg(np.zeros_like(lung_mask), sources, path, **ALGORITHM)
    assert [p.name for p in path.parent.iterdir()] == ["seg.dcm"]
    assert not read_dicom_seg(path, sources).any()


def test_no_patient_name_in_logs_or_warnings(tmp_path, ct_volume, lung_mask, ct_datasets, caplog):
    # a one-component name makes highdicom warn, quoting the name: that warning must not escape
    sources = ct_datasets(ct_volume, patient_name="SECRETNAME", tag="phi")
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_dicom_seg(lung_mask, sources, tmp_path / "private_folder_SECRETNAME" / "seg.dcm", **ALGORITHM)
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert any("seg.dcm" in m for m in messages)
    assert not [m for m in messages if "SECRETNAME" in m]


def _assert_valid(path) -> None:
    errors, text = run_dciodvfy(path)
    assert errors == 0, text


@needs_dciodvfy
@pytest.mark.parametrize("empty", [False, True], ids=["mask", "empty_mask"])
def test_dciodvfy_reports_no_error(tmp_path, ct_volume, lung_mask, ct_datasets, empty):
    mask = np.zeros_like(lung_mask) if empty else lung_mask
    _assert_valid(write_dicom_seg(mask, ct_datasets(ct_volume), tmp_path / "seg.dcm", **ALGORITHM))


def test_run_dciodvfy_without_the_tool(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert run_dciodvfy(tmp_path / "seg.dcm") is None


@needs_dciodvfy
def test_run_dciodvfy_counts_errors(tmp_path, ct_volume, ct_datasets):
    broken = ct_datasets(ct_volume[:1])[0]
    del broken.Rows  # a Type 1 attribute of the CT image IOD
    broken.save_as(tmp_path / "broken.dcm", enforce_file_format=True)
    errors, text = run_dciodvfy(tmp_path / "broken.dcm")
    assert errors >= 1 and "Rows" in text


@needs_dciodvfy
def test_real_series(tmp_path, real_lung_series):
    datasets, mask = real_lung_series
    start = time.perf_counter()
    path = write_dicom_seg(mask, datasets, tmp_path / "seg.dcm", **ALGORITHM)
    assert time.perf_counter() - start < 10.0
    np.testing.assert_array_equal(read_dicom_seg(path, datasets), mask)
    _assert_valid(path)


def test_anonymised_sources_without_type2_attributes(tmp_path, ct_volume, lung_mask, ct_datasets):
    """Anonymised exports drop Type 2 patient/study attributes: the SEG has them empty, the sources stay as given."""
    datasets = ct_datasets(ct_volume)
    for ds in datasets:
        for keyword in ("AccessionNumber", "StudyID", "PatientName", "PatientID", "StudyDate", "StudyTime"):
            if keyword in ds:
                delattr(ds, keyword)
    path = write_dicom_seg(lung_mask, datasets, tmp_path / "seg.dcm", algorithm_name="t", algorithm_version="1")
    np.testing.assert_array_equal(read_dicom_seg(path, datasets), lung_mask)
    assert "AccessionNumber" not in datasets[0]
    seg = pydicom.dcmread(path)
    assert seg.AccessionNumber == "" and seg.PatientID == ""
    result = run_dciodvfy(path)
    if result is not None:
        assert result[0] == 0, result[1]


# ---------------------------------------------------------------------------------------------- several structures
def _sparse_structures() -> list[Structure]:
    return structures_from_labels({"1": "liver", "4": "spleen", "7": "tumour core"})


def _with_sparse_values(labels: np.ndarray) -> np.ndarray:
    return np.take(np.array([0, 1, 4, 7], np.uint8), labels)


STRUCTURES_ROUND_TRIP_CASES = [
    # (name, structures (None: the three of the fixture), label map builder from the fixture's label map)
    ("three", None, lambda labels: labels),
    ("one_absent", None, lambda labels: np.where(labels == 3, 0, labels).astype(np.uint8)),
    ("empty", None, np.zeros_like),
    ("int64", None, lambda labels: labels.astype(np.int64)),
    ("float_whole_values", None, lambda labels: labels.astype(np.float32)),
    ("sparse_values", _sparse_structures, _with_sparse_values),
    ("one_structure_of_value_2", lambda: structures_from_labels({"2": "left lung"}), lambda labels: (labels == 2) * 2),
]


@pytest.mark.parametrize(
    ("name", "structures", "build"), STRUCTURES_ROUND_TRIP_CASES, ids=[c[0] for c in STRUCTURES_ROUND_TRIP_CASES]
)
def test_structures_round_trip(tmp_path, ct_volume, label_map, three_structures, ct_datasets, name, structures, build):
    structures = three_structures if structures is None else structures()
    labels = build(label_map)
    sources = ct_datasets(ct_volume, tag=name)
    path = write_dicom_seg(labels, sources, tmp_path / "seg.dcm", structures=structures, **ALGORITHM)
    back = read_dicom_seg(path, sources, structures)
    assert back.dtype == np.uint8 and back.shape == labels.shape
    np.testing.assert_array_equal(back, labels)
    numbers = np.searchsorted([0, *(s.value for s in structures)], labels)  # value -> segment number
    np.testing.assert_array_equal(read_dicom_seg(path, sources), numbers)  # without structures: segment numbers
    seg = pydicom.dcmread(path)
    assert len(seg.SegmentSequence) == len(structures)
    frames = sum(int((labels[k] == s.value).any()) for k in range(labels.shape[0]) for s in structures)
    assert int(seg.NumberOfFrames) == (frames or labels.shape[0] * len(structures))  # one frame per slice and segment


def test_structure_segments_are_described(tmp_path, ct_volume, label_map, three_structures, ct_datasets):
    """Segments 1..K in value order (given in any order), each with the structure's label, codes and colour."""
    path = write_dicom_seg(
        label_map, ct_datasets(ct_volume), tmp_path / "seg.dcm", structures=three_structures[::-1], **ALGORITHM
    )
    seg = pydicom.dcmread(path)
    assert seg.SegmentationType == "BINARY"
    assert seg.ContentLabel == "SEGMENTATION"
    assert seg.SeriesDescription == f"3 segments - research use only, {NOT_FOR_CLINICAL_USE}"
    assert NOT_FOR_CLINICAL_USE in seg.ContentDescription.lower()
    assert len(seg.SegmentSequence) == len(three_structures)
    for number, (item, structure) in enumerate(zip(seg.SegmentSequence, three_structures, strict=True), start=1):
        assert item.SegmentNumber == number
        assert item.SegmentLabel == structure.label
        category, prop = item.SegmentedPropertyCategoryCodeSequence[0], item.SegmentedPropertyTypeCodeSequence[0]
        assert (category.CodeValue, category.CodingSchemeDesignator, category.CodeMeaning) == (
            structure.category[0],
            "SCT",
            structure.category[1],
        )
        assert (prop.CodeValue, prop.CodingSchemeDesignator, prop.CodeMeaning) == (
            structure.property_type[0],
            "SCT",
            structure.property_type[1],
        )
        rgb = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue).to_rgb()
        assert np.allclose(rgb, structure.color, atol=1)
        assert item.SegmentAlgorithmType == "AUTOMATIC" and item.SegmentAlgorithmName == "cenet"
    # the frames of segment 3 (heart) sit on slice 1 only, the only slice holding it
    by_uid = {ds.SOPInstanceUID: k for k, ds in enumerate(ct_datasets(ct_volume))}
    heart_slices = [
        by_uid[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        for frame in seg.PerFrameFunctionalGroupsSequence
        if frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 3
    ]
    assert heart_slices == [1]


STRUCTURE_OPTION_CASES = [
    # (labels map, kwargs, attribute, expected)
    (
        {"1": "heart", "2": "lungs"},
        {},
        "SeriesDescription",
        f"Heart, Lungs - research use only, {NOT_FOR_CLINICAL_USE}",
    ),
    ({"1": "heart", "2": "lungs"}, {}, "ContentLabel", "SEGMENTATION"),
    ({"1": "heart", "2": "lungs"}, {"content_label": "CHEST"}, "ContentLabel", "CHEST"),
    (
        {"1": "heart", "2": "lungs"},
        {"series_description": "Chest"},
        "SeriesDescription",
        f"Chest - {NOT_FOR_CLINICAL_USE}",
    ),
    ({"1": "a" * 30}, {}, "SeriesDescription", f"Segmentation - research use only, {NOT_FOR_CLINICAL_USE}"),
]


@pytest.mark.parametrize(("labels", "kwargs", "attribute", "expected"), STRUCTURE_OPTION_CASES)
def test_structure_options(tmp_path, ct_volume, lung_mask, ct_datasets, labels, kwargs, attribute, expected):
    path = write_dicom_seg(
        lung_mask,
        ct_datasets(ct_volume),
        tmp_path / "s.dcm",
        structures=structures_from_labels(labels),
        **ALGORITHM,
        **kwargs,
    )
    value = pydicom.dcmread(path)[attribute].value
    assert value == expected and len(value) <= (16 if attribute == "ContentLabel" else 64)


def test_one_structure_writes_what_the_single_segment_arguments_write(tmp_path, ct_volume, lung_mask, ct_datasets):
    """A binary model's SEG is the same whether its one structure or the single-segment arguments describe it."""
    lung = SEGMENTS["lung"]
    sources = ct_datasets(ct_volume)
    uids = {"series_instance_uid": "1.2.3.4", "sop_instance_uid": "1.2.3.5"}
    by_structure = pydicom.dcmread(
        write_dicom_seg(
            lung_mask, sources, tmp_path / "a.dcm", structures=structures_from_config(None, lung), **ALGORITHM, **uids
        )
    )
    by_arguments = pydicom.dcmread(
        write_dicom_seg(
            lung_mask,
            sources,
            tmp_path / "b.dcm",
            segment_label=lung.label,
            segmented_property_category=lung.category,
            segmented_property_type=lung.property_type,
            display_color=lung.color,
            **ALGORITHM,
            **uids,
        )
    )
    for keyword in ("SegmentSequence", "ContentLabel", "SeriesDescription", "ContentDescription", "NumberOfFrames"):
        assert by_structure[keyword].value == by_arguments[keyword].value, keyword
    assert by_structure.PixelData == by_arguments.PixelData


STRUCTURE_BAD_CASES = [
    # (name, label map value to add, write kwargs besides structures, message fragment)
    ("unknown_value", 5, {}, r"mask values 5 are not among the structures' values \[1, 2, 3\]"),
    ("value_above_255", 300, {}, r"mask values 300 are not among"),
    ("fraction", 0.5, {}, r"mask values 0.5 are not among"),
    ("with_segment_label", None, {"segment_label": "Lung"}, "either structures or segment_label"),
    ("with_colour", None, {"display_color": (1, 2, 3)}, "either structures or display_color"),
]


@pytest.mark.parametrize(
    ("name", "value", "kwargs", "message"), STRUCTURE_BAD_CASES, ids=[c[0] for c in STRUCTURE_BAD_CASES]
)
def test_structures_bad_input(
    tmp_path, ct_volume, label_map, three_structures, ct_datasets, name, value, kwargs, message
):
    labels = label_map.astype(np.float64 if isinstance(value, float) else np.int64)
    if value is not None:
        labels[2, 0, 0] = value
    with pytest.raises(ValueError, match=message):
        write_dicom_seg(
            labels, ct_datasets(ct_volume), tmp_path / "seg.dcm", structures=three_structures, **ALGORITHM, **kwargs
        )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("structures", "message"),
    [
        ([], "non-empty"),
        ([{"value": 1, "label": "a"}, {"value": 1, "label": "b"}], "share a label value"),
        ([{"value": 0, "label": "background"}], "1-255"),
    ],
    ids=["empty", "repeated_value", "background_value"],
)
def test_bad_structures(tmp_path, ct_volume, lung_mask, ct_datasets, structures, message):
    with pytest.raises(ValueError, match=message):
        write_dicom_seg(lung_mask, ct_datasets(ct_volume), tmp_path / "seg.dcm", structures=structures, **ALGORITHM)


def test_value_between_sparse_structure_values_refused(tmp_path, ct_volume, label_map, ct_datasets):
    labels = _with_sparse_values(label_map)
    labels[2, 0, 0] = 2
    with pytest.raises(ValueError, match=r"mask values 2 are not among the structures' values \[1, 4, 7\]"):
        write_dicom_seg(
            labels, ct_datasets(ct_volume), tmp_path / "seg.dcm", structures=_sparse_structures(), **ALGORITHM
        )


def test_read_refuses_other_number_of_structures(tmp_path, ct_volume, label_map, three_structures, ct_datasets):
    sources = ct_datasets(ct_volume)
    path = write_dicom_seg(label_map, sources, tmp_path / "seg.dcm", structures=three_structures, **ALGORITHM)
    with pytest.raises(ValueError, match=r"seg\.dcm: the SEG has 3 segment\(s\), but 2 structure\(s\) were given"):
        read_dicom_seg(path, sources, three_structures[:2])


def test_structures_log_no_patient_name(tmp_path, ct_volume, label_map, three_structures, ct_datasets, caplog):
    sources = ct_datasets(ct_volume, patient_name="SECRETNAME", tag="phi")
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_dicom_seg(
            label_map, sources, tmp_path / "SECRETNAME" / "seg.dcm", structures=three_structures, **ALGORITHM
        )
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert any("seg.dcm: 3 segments (Right lung, Left lung, Heart)" in m for m in messages)
    assert not [m for m in messages if "SECRETNAME" in m]


@needs_dciodvfy
@pytest.mark.parametrize("case", ["three", "one_absent", "empty"])
def test_structures_dciodvfy_reports_no_error(tmp_path, ct_volume, label_map, three_structures, ct_datasets, case):
    labels = {"three": label_map, "one_absent": np.where(label_map == 3, 0, label_map), "empty": 0 * label_map}[case]
    path = write_dicom_seg(
        labels.astype(np.uint8), ct_datasets(ct_volume), tmp_path / "seg.dcm", structures=three_structures, **ALGORITHM
    )
    _assert_valid(path)
