"""The files of an inference run, for a binary model and for a model of several structures: what is written for a
DICOM series (SEG segments, label volume, montage, report, log line) and for a 2D image (mask or label map, overlay,
record)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from pipeline.io.dicom_series import DicomSeries, scan_dicom_folder
from pipeline.io.dicom_volume import SeriesVolume, load_series_volume
from pipeline.outputs import InferenceWriter, mask_measurements, read_dicom_seg, read_measurement_report
from pipeline.segments import SEGMENTS, Structure, structures_from_labels

ALGORITHM = {"algorithm_name": "cenet", "algorithm_version": "0.1.0"}
PATIENT = "SECRET^NAME"
RED = (255, 0, 0)


@pytest.fixture
def series(tmp_path, ct_volume, ct_datasets) -> tuple[DicomSeries, SeriesVolume]:
    """The synthetic CT series written to a folder named after the patient, found and loaded as inference does."""
    folder = tmp_path / PATIENT
    folder.mkdir()
    for k, ds in enumerate(ct_datasets(ct_volume, patient_name=PATIENT)):
        ds.save_as(folder / f"IM{k:04d}", enforce_file_format=True)
    (found,), _ = scan_dicom_folder(folder)
    return found, load_series_volume(found)


def _measurements(mask: np.ndarray, volume: SeriesVolume, structures: list[Structure]) -> dict[str, Any]:
    """Measurements shaped as the runner hands them over (no post-processing), with its stage timings."""
    measured = mask_measurements(mask, volume.spacing, structures)
    report: dict[str, Any] = {
        "segment": ", ".join(s.label for s in structures),
        "segmented_volume_ml": measured["volume_ml"],
        "volume_before_postprocessing_ml": measured["volume_ml"],
        "postprocessing": None,
        "segmented_voxels": measured["voxels"],
        "per_slice": measured["per_slice"],
    }
    if len(structures) > 1:
        report["structures"] = [
            {**s, "volume_before_postprocessing_ml": s["volume_ml"]} for s in measured["structures"]
        ]
    return {**report, "timings": {"read_s": 0.01, "model_forward_s": 0.02}}


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "P"  # indexed: greys and a few colours
        return np.asarray(image.convert("RGB"))


def _has(rgb: np.ndarray, color) -> bool:
    return bool(np.all(rgb == np.asarray(color, np.uint8), axis=-1).any())


def _no_patient_data(out: Path, records: list[logging.LogRecord]) -> None:
    for path in out.rglob("*"):
        assert "SECRET" not in path.relative_to(out).as_posix()
        if path.suffix == ".json":
            assert "SECRET" not in path.read_text()
    assert not [r for r in records if "SECRET" in r.getMessage()]


def test_write_series_with_three_structures(tmp_path, series, label_map, three_structures, caplog):
    found, volume = series
    out = tmp_path / "out"
    writer = InferenceWriter(out, SEGMENTS["lung"], structures=three_structures, **ALGORITHM)
    measurements = _measurements(label_map, volume, three_structures)
    given = json.loads(json.dumps(measurements["structures"]))
    with caplog.at_level(logging.INFO):
        report = writer.write_series(found, volume, label_map, measurements)

    folder = out / found.study_label / found.label
    assert sorted(p.name for p in folder.iterdir()) == sorted(report["outputs"])
    assert sorted(report["outputs"]) == ["labels.nii.gz", "overlay.png", "report.json", "seg.dcm", "sr.dcm"]
    assert report["timings"]["write_sr_s"] >= 0
    # one SEG segment per structure, read back in the dataset's values
    np.testing.assert_array_equal(read_dicom_seg(folder / "seg.dcm", volume.datasets, three_structures), label_map)
    seg = pydicom.dcmread(folder / "seg.dcm")
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["Right lung", "Left lung", "Heart"]
    # the SR: one volume per segment of that SEG, the report's
    volumes = read_measurement_report(folder / "sr.dcm")
    assert [(v["label"], v["segment_number"], v["volume_ml"]) for v in volumes] == [
        (s["label"], k, s["volume_ml"]) for k, s in enumerate(given, start=1)
    ]
    assert {v["seg_sop_instance_uid"] for v in volumes} == {seg.SOPInstanceUID}
    # the label volume keeps the values
    nifti = np.asarray(nib.load(folder / "labels.nii.gz").dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(nifti, label_map)
    # the montage: 2 slices with foreground on a 2 x 1 grid of 256-pixel tiles, the legend below
    overlay = _rgb(folder / "overlay.png")
    assert overlay.shape[0] > 256 and overlay.shape[1] == 512
    for s in three_structures:
        assert _has(overlay[:256], s.color) and _has(overlay[256:], s.color)
    assert not _has(overlay, RED)
    # the report carries the runner's structures as they are
    written = json.loads((folder / "report.json").read_text())
    assert written["structures"] == given
    assert written["segment"] == "Right lung, Left lung, Heart"
    # the log line gives each structure's volume
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith(found.label + ":")]
    volumes = ", ".join(f"{s['label'].lower()} {s['volume_ml']:.1f} mL" for s in given)
    assert f": {volumes} ({measurements['segmented_volume_ml']:.1f} mL in all" in line
    _no_patient_data(out, caplog.records)


def test_write_series_binary_keeps_its_outputs(tmp_path, series, lung_mask, caplog):
    found, volume = series
    out = tmp_path / "out"
    writer = InferenceWriter(out, SEGMENTS["lung"], **ALGORITHM)
    measurements = _measurements(lung_mask, volume, writer.structures)
    with caplog.at_level(logging.INFO):
        report = writer.write_series(found, volume, lung_mask, measurements)

    folder = out / found.study_label / found.label
    assert "structures" not in report
    seg = pydicom.dcmread(folder / "seg.dcm")
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["Lung"] and seg.ContentLabel == "LUNG"
    np.testing.assert_array_equal(read_dicom_seg(folder / "seg.dcm", volume.datasets), lung_mask)
    assert report["outputs"] == ["seg.dcm", "sr.dcm", "labels.nii.gz", "overlay.png", "report.json"]
    (lung,) = read_measurement_report(folder / "sr.dcm")
    assert (lung["label"], lung["volume_ml"]) == ("Lung", measurements["segmented_volume_ml"])
    overlay = _rgb(folder / "overlay.png")
    assert overlay.shape == (256, 512, 3) and _has(overlay, RED)  # no legend
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith(found.label + ":")]
    volume_ml = measurements["segmented_volume_ml"]
    assert f"mm: lung {volume_ml:.1f} mL ({volume_ml:.1f} mL before post-processing); " in line
    _no_patient_data(out, caplog.records)


def test_write_series_without_an_sr_keeps_the_seg(tmp_path, series, label_map, three_structures, caplog):
    """Measurements without each structure's volume: the SR cannot state what the report does not; the series keeps
    its SEG and other outputs, and the report says why the SR is missing."""
    found, volume = series
    out = tmp_path / "out"
    writer = InferenceWriter(out, SEGMENTS["lung"], structures=three_structures, **ALGORITHM)
    measurements = _measurements(label_map, volume, three_structures)
    del measurements["structures"]
    with caplog.at_level(logging.INFO):
        report = writer.write_series(found, volume, label_map, measurements)

    folder = out / found.study_label / found.label
    assert report["outputs"] == ["seg.dcm", "labels.nii.gz", "overlay.png", "report.json"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(report["outputs"])
    (warning,) = report["warnings"]
    assert warning.startswith("no DICOM SR: ValueError: ") and "Right lung" in warning
    assert report["seg_missing"] is None
    assert any("no DICOM SR" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    _no_patient_data(out, caplog.records)


def _chambers() -> tuple[np.ndarray, list[Structure]]:
    """(40, 48) cardiac label map: RV cavity (1), the myocardium ring (2) around the LV cavity (3)."""
    yy, xx = np.mgrid[:40, :48]
    labels = np.zeros((40, 48), np.uint8)
    radius = np.hypot(yy - 20, xx - 30)
    labels[radius < 12] = 2
    labels[radius < 7] = 3
    labels[(np.hypot(yy - 20, xx - 10) < 8) & (labels == 0)] = 1
    return labels, structures_from_labels({"1": "RV cavity", "2": "myocardium", "3": "LV cavity"})


IMAGE_CASES = [
    # (name, several structures, label map builder, files written)
    ("binary", False, lambda labels: (labels > 0).astype(np.uint8), ["case_mask.png", "case_overlay.png"]),
    ("three_structures", True, lambda labels: labels, ["case_labels.png", "case_overlay.png"]),
    ("one_absent", True, lambda labels: np.where(labels == 1, 0, labels), ["case_labels.png", "case_overlay.png"]),
    ("empty", True, np.zeros_like, ["case_labels.png", "case_overlay.png"]),
]


@pytest.mark.parametrize(("name", "several", "build", "files"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_write_image(tmp_path, name, several, build, files):
    labels, structures = _chambers()
    labels = build(labels)
    writer = InferenceWriter(tmp_path, SEGMENTS["tissue"], structures=structures if several else None)
    image = torch.from_numpy(np.random.default_rng(0).normal(size=(1, *labels.shape)).astype(np.float32))
    pred = torch.from_numpy(labels.astype(np.float32))[None]  # (1, H, W) as the predictor restores it

    record = writer.write_image("case", image, pred)

    assert record["outputs"] == [f"images/{f}" for f in files]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(files)
    area = int(np.count_nonzero(labels))
    assert (record["area_px"], record["fraction"]) == (area, round(area / labels.size, 6))
    with Image.open(tmp_path / record["outputs"][0]) as written:
        assert written.mode == "L" and written.size == labels.shape[::-1]  # the image's own size
        values = np.asarray(written)
    overlay = _rgb(tmp_path / record["outputs"][1])
    if not several:
        assert set(record) == {"area_px", "fraction", "outputs"}
        np.testing.assert_array_equal(values, np.where(labels > 0, 255, 0))
        assert overlay.shape == (*labels.shape, 3) and _has(overlay, RED)
        return
    np.testing.assert_array_equal(values, labels)
    expected = [
        {
            "value": s.value,
            "label": s.label,
            "area_px": int((labels == s.value).sum()),
            "fraction": round(int((labels == s.value).sum()) / labels.size, 6),
        }
        for s in structures
    ]
    assert record["structures"] == expected
    assert overlay.shape[0] > labels.shape[0]  # the legend below the image
    legend = overlay[labels.shape[0] :]
    for s in structures:
        assert _has(legend, s.color)
        assert _has(overlay[: labels.shape[0], : labels.shape[1]], s.color) == bool((labels == s.value).any())
    assert not _has(overlay, RED)
