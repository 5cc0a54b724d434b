"""Demo DICOM: write_ct_series objects are valid CT images, the demo study has the layout selection needs and records
the phantom's true volumes."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian, generate_uid

from pipeline.demo import study as demo_dicom
from pipeline.demo.phantom import HEART, LEFT_LUNG, RIGHT_LUNG
from pipeline.demo.study import (
    DEMO_PATIENT_ID,
    demo_study_truth,
    ensure_demo_study,
    is_complete_demo_study,
    synthesize_ct_volume,
    write_ct_series,
    write_demo_study,
)
from pipeline.io import SeriesRules, load_series_volume, scan_dicom_folder, select_series

REPO = Path(__file__).resolve().parents[2]
DCIODVFY = shutil.which("dciodvfy")
SMALL = {"size": 64, "num_slices": 4}  # a fast study for the tests


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return write_demo_study(tmp_path_factory.mktemp("demo") / "study", **SMALL)


def _hu(num_slices: int = 3, size: int = 64) -> np.ndarray:
    rows = np.arange(size, dtype=np.float32)[:, None] * 10.0 - 1000.0
    return np.stack([np.broadcast_to(rows + 7.0 * k, (size, size)) for k in range(num_slices)])


def _series_kwargs(**kwargs) -> dict:
    defaults = {"study_uid": generate_uid(), "series_uid": generate_uid(), "series_number": 5, "description": "x"}
    return {**defaults, **kwargs}


# ---- write_ct_series ----


def test_ct_series_attributes_and_values(tmp_path):
    hu = _hu()
    files = write_ct_series(tmp_path, hu, **_series_kwargs(series_number=7, description="Thorax 1.0 B30f"))
    assert [f.name for f in files] == ["1-01.dcm", "1-02.dcm", "1-03.dcm"]
    ds = pydicom.dcmread(files[1])
    assert ds.SOPClassUID == CTImageStorage and ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert (ds.PatientName, ds.PatientID, ds.SeriesNumber, ds.InstanceNumber) == ("Demo^Synthetic", "DEMO0001", 7, 2)
    assert (ds.BitsStored, ds.PixelRepresentation, ds.RescaleIntercept, ds.RescaleSlope) == (12, 0, -1024, 1)
    assert ds.ImagePositionPatient[2] == pytest.approx(5.0) and ds.FrameOfReferenceUID
    np.testing.assert_array_equal(ds.pixel_array.astype(np.float32) - 1024, hu[1])
    (series,), _ = scan_dicom_folder(tmp_path)
    np.testing.assert_array_equal(load_series_volume(series).array, hu)


def test_ct_series_clips_to_the_stored_range(tmp_path):
    hu = np.full((1, 64, 64), -2000.0)
    hu[0, :10] = 5000.0
    (path,) = write_ct_series(tmp_path, hu, **_series_kwargs())
    values = pydicom.dcmread(path).pixel_array.astype(np.float32) - 1024
    assert values.min() == -1024 and values.max() == 3071


def test_ct_series_is_deterministic(tmp_path):
    kwargs = _series_kwargs()
    first = write_ct_series(tmp_path / "a", _hu(), **kwargs)
    second = write_ct_series(tmp_path / "b", _hu(), **kwargs)
    assert [f.read_bytes() for f in first] == [f.read_bytes() for f in second]


def test_ct_series_implicit_vr(tmp_path):
    (path,) = write_ct_series(tmp_path, _hu(1), transfer_syntax=ImplicitVRLittleEndian, **_series_kwargs())
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian


@pytest.mark.parametrize(
    ("volume", "kwargs", "match"),
    [
        (np.zeros((64, 64)), {}, r"volume_hu must be \(N, H, W\)"),
        (_hu(2), {"positions": np.zeros((3, 3))}, r"positions must have shape \(2, 3\)"),
        (_hu(2), {"instance_numbers": [1]}, "instance_numbers must have 2 entries"),
        (_hu(2), {"file_names": ["a.dcm", "a.dcm"]}, "file_names must be 2 distinct names"),
        (
            _hu(2),
            {"transfer_syntax": "1.2.840.10008.1.2.4.110"},
            "cannot write transfer syntax 1.2.840.10008.1.2.4.110",
        ),
        (_hu(2), {"transfer_syntax": "1.2.840.10008.1.2.2"}, r"1.2.840.10008.1.2.2 \(Explicit VR Big Endian\)"),
    ],
)
def test_ct_series_invalid_arguments(tmp_path, volume, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_ct_series(tmp_path, volume, **_series_kwargs(**kwargs))


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) not installed")
def test_demo_objects_pass_dciodvfy(study):
    """No "Error" from the DICOM validator for an axial slice and for the scout image."""
    for path in sorted(study.rglob("1-01.dcm"))[:1] + sorted(study.rglob("1-1.dcm")):
        result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
        report = result.stdout + result.stderr
        assert "Error" not in report, report
        assert "Warning" not in report, report


def test_demo_series_are_accepted_as_segmentation_sources(study):
    """highdicom builds a binary SEG on the loaded headers (PixelData already dropped by the loader)."""
    hd = pytest.importorskip("highdicom")
    from pydicom.sr.codedict import codes

    series, _ = scan_dicom_folder(study)
    (axial, _), _ = select_series(series)
    volume = load_series_volume(axial)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Lung",
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.Lung,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="test", version="1", family=codes.DCM.ArtificialIntelligence
        ),
    )
    seg = hd.seg.Segmentation(
        source_images=volume.datasets,
        pixel_array=(volume.array < -500).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=100,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="pipeline",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    assert seg.PatientID == DEMO_PATIENT_ID and seg.FrameOfReferenceUID == volume.datasets[0].FrameOfReferenceUID


# ---- the synthetic volume ----


def test_volume_shapes_and_structures():
    hu, labels = synthesize_ct_volume(size=64, num_slices=12, seed=1)
    assert hu.shape == labels.shape == (12, 64, 64) and hu.dtype == np.float32 and labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) == {0, RIGHT_LUNG, LEFT_LUNG, HEART}
    lungs = np.isin(labels, (RIGHT_LUNG, LEFT_LUNG))
    area = lungs.sum(axis=(1, 2))
    assert area[0] == 0 and area[-1] == 0 and area[5] > 0.1 * 64 * 64  # above the apices, below the bases
    assert hu[lungs].mean() < -600 and hu[:, 32, 32].max() > 0  # air-filled lungs, soft tissue in the middle
    assert hu[labels == HEART].mean() > 0
    heart = (labels == HEART).sum(axis=(1, 2))
    assert heart[:3].sum() == 0 and heart[-2:].sum() == 0 and heart[6] > 0.05 * 64 * 64  # mid-chest only
    columns = np.nonzero(labels)[2]
    right, left = (columns[labels[np.nonzero(labels)] == value].mean() for value in (RIGHT_LUNG, LEFT_LUNG))
    assert right < 32 < left  # the patient's right on the image's left, as DICOM's axial orientation shows it


def test_volume_changes_smoothly_along_z():
    _, labels = synthesize_ct_volume(size=64, num_slices=24, seed=0)
    mask = np.isin(labels, (RIGHT_LUNG, LEFT_LUNG))
    area = mask.sum(axis=(1, 2))
    large = np.flatnonzero(area >= 0.25 * area.max())
    assert len(large) >= 12
    for k in large[:-1]:  # neighbouring slices overlap: the lungs form one 3D shape, not random sections
        a, b = mask[k], mask[k + 1]
        assert (a & b).sum() / (a | b).sum() > 0.6, k
    for value in (RIGHT_LUNG, LEFT_LUNG, HEART):  # and so does each structure, where it is large in both slices
        mask = labels == value
        area = mask.sum(axis=(1, 2))
        large = np.flatnonzero(area >= 0.5 * area.max())
        assert len(large) >= 7
        for k in large[np.isin(large + 1, large)]:
            a, b = mask[k], mask[k + 1]
            assert (a & b).sum() / (a | b).sum() > 0.55, (value, k)


@pytest.mark.parametrize(("kwargs", "match"), [({"size": 32}, "size must be at least 64"), ({"num_slices": 1}, "num_")])
def test_volume_invalid_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthesize_ct_volume(**kwargs)


# ---- the demo study ----


def test_study_layout(study):
    folders = sorted(p.relative_to(study).as_posix() for p in study.glob("*/*/*"))
    assert folders == [
        f"{DEMO_PATIENT_ID}/01-01-2000-NA-Thorax Demo-00001/1.000000-Topogram  0.6  T20f-00001",
        f"{DEMO_PATIENT_ID}/01-01-2000-NA-Thorax Demo-00001/2.000000-Thorax  8.0  B70f-00002",
        f"{DEMO_PATIENT_ID}/01-01-2000-NA-Thorax Demo-00001/3.000000-Thorax  8.0  B40f-00003",
    ]
    assert is_complete_demo_study(study, **SMALL)


def test_study_selection_and_volumes(study):
    """Default rules keep the two axial series and reject the scout; both share positions and frame of reference."""
    series, skipped = scan_dicom_folder(study)
    assert skipped == []  # the hidden completion marker is not looked at
    chosen, rejected = select_series(series)
    assert [s.description for s in chosen] == ["Thorax 8.0 B70f", "Thorax 8.0 B40f"]
    assert [(s.description, reason) for s, reason in rejected] == [
        ("Topogram 0.6 T20f", "ImageType contains LOCALIZER")
    ]
    sharp, smooth = (load_series_volume(s) for s in chosen)
    assert sharp.shape == smooth.shape == (4, 64, 64) and sharp.warnings == smooth.warnings == []
    np.testing.assert_allclose(sharp.affine, smooth.affine)
    np.testing.assert_allclose(sharp.spacing, (8.0, 350 / 64, 350 / 64))
    assert sharp.datasets[0].FrameOfReferenceUID == smooth.datasets[0].FrameOfReferenceUID
    assert sharp.datasets[0].InstanceNumber == 4  # instance 1 is the most superior slice: loaded last
    noise = [v.array[:, 1:6, 24:40].std() for v in (sharp, smooth)]  # air in front of the chest, no edges
    assert noise[0] > 2 * noise[1]  # B70f is the sharper, noisier kernel
    assert SeriesRules(largest_only=True) and len(select_series(series, SeriesRules(largest_only=True))[0]) == 1


def test_study_records_the_true_volumes(study):
    """Each series' truth is the phantom's label map counted voxel by voxel, in the volume of the series' voxels."""
    truth = demo_study_truth(study)
    assert list(truth) == ["Thorax 8.0 B70f", "Thorax 8.0 B40f"]  # the axial series, by SeriesDescription
    assert truth["Thorax 8.0 B70f"] == truth["Thorax 8.0 B40f"]  # one anatomy, two reconstructions
    _, labels = synthesize_ct_volume(**SMALL)
    voxel_ml = (350 / 64) ** 2 * 8.0 / 1000.0
    for value, name in ((RIGHT_LUNG, "right lung"), (LEFT_LUNG, "left lung"), (HEART, "heart")):
        voxels = int((labels == value).sum())
        assert voxels > 0
        assert truth["Thorax 8.0 B70f"][name] == {"voxels": voxels, "volume_ml": pytest.approx(voxels * voxel_ml)}
    marker = json.loads((study / demo_dicom.MARKER_NAME).read_text())
    assert marker["truth"] == truth


def test_the_default_study_truth_is_plausible():
    """The default study (256 px, 24 slices): lungs of about 3.3 L and a heart of about half a litre."""
    _, labels = synthesize_ct_volume()
    voxel_ml = (350 / 256) ** 2 * 8.0 / 1000.0
    volumes = {value: (labels == value).sum() * voxel_ml for value in (RIGHT_LUNG, LEFT_LUNG, HEART)}
    assert 1400 < volumes[LEFT_LUNG] < volumes[RIGHT_LUNG] < 2000  # the right lung is the larger one
    assert 3000 < volumes[RIGHT_LUNG] + volumes[LEFT_LUNG] < 3500 and 350 < volumes[HEART] < 700


def test_no_truth_without_a_demo_study(tmp_path):
    with pytest.raises(ValueError, match="no complete demo study"):
        demo_study_truth(tmp_path)


def test_study_is_deterministic(study, tmp_path):
    again = write_demo_study(tmp_path / "again", **SMALL)
    for path in sorted(study.rglob("*.dcm")):
        assert path.read_bytes() == (again / path.relative_to(study)).read_bytes()


def test_ensure_reuses_and_repairs(tmp_path):
    root = ensure_demo_study(tmp_path / "study", **SMALL)
    marker = root / demo_dicom.MARKER_NAME
    written = marker.stat().st_mtime_ns
    ensure_demo_study(root, **SMALL)
    assert marker.stat().st_mtime_ns == written  # complete: reused, not rewritten
    next(root.rglob("1-02.dcm")).unlink()
    assert not is_complete_demo_study(root, **SMALL)
    ensure_demo_study(root, **SMALL)
    assert is_complete_demo_study(root, **SMALL)
    assert not is_complete_demo_study(root, size=128)
    with pytest.raises(TypeError, match="unexpected keyword"):
        ensure_demo_study(root, num_cases=3)


def test_never_replaces_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "scan.dcm").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not a demo study"):
        write_demo_study(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "scan.dcm").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary folder left behind


def test_make_demo_cli_dicom(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_demo", REPO / "datasets" / "make_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = module.main(["--dicom", str(tmp_path / "study"), "--size", "64", "--num_slices", "3", "--seed", "2"])
    assert is_complete_demo_study(root, size=64, num_slices=3, seed=2)
    assert "Wrote the demo DICOM study" in capsys.readouterr().out
