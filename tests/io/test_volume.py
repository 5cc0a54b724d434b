"""load_series_volume: geometric slice order, affine and spacing, honest warnings, clear errors, decoding paths."""

from __future__ import annotations

import logging
import struct
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from pipeline.io import DicomSeriesError, SeriesRules, load_series_volume, scan_dicom_folder, select_series
from pipeline.outputs.measurements import mask_measurements

PIXEL_SPACING = (0.5, 0.8)  # (row, column) spacing: unequal, so a swap shows
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# tests/io/<this file> -> parents[3] is the folder holding the repository and ``shared``.
REAL_STUDY = Path(__file__).resolve().parents[3] / "shared" / "data" / "dicom"


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    """Orthonormal 3x3 whose columns are the row direction, column direction and slice normal."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    about_z = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    about_x = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    return about_z @ about_x


def _load_only_series(phi_dir: Path):
    series, _ = scan_dicom_folder(phi_dir)
    assert len(series) == 1
    return load_series_volume(series[0])


def _check_geometry(volume, positions: np.ndarray, orientation: np.ndarray) -> None:
    """The affine maps (column i, row j, slice k) to IPP_k + i * column spacing * row dir + j * row spacing * col dir.

    Checked against positions computed by hand, not by the code under test.
    """
    row_dir, col_dir = orientation[:3], orientation[3:]
    for k, position in enumerate(positions):
        for i, j in ((0, 0), (5, 0), (0, 7), (63, 63)):
            expected = position + i * PIXEL_SPACING[1] * row_dir + j * PIXEL_SPACING[0] * col_dir
            np.testing.assert_allclose((volume.affine @ [i, j, k, 1.0])[:3], expected, atol=1e-4)
        np.testing.assert_allclose(volume.datasets[k].ImagePositionPatient, position, atol=1e-4)


# (name, orientation, step along the normal per geometric slice, file order as a permutation, instance numbers)
GEOMETRY_CASES = [
    ("axial, instance numbers shuffled", AXIAL, 2.5, [0, 1, 2, 3, 4], [3, 1, 5, 2, 4]),
    ("axial, files written head first", AXIAL, 2.5, [4, 3, 2, 1, 0], [1, 2, 3, 4, 5]),
    ("axial, files shuffled", AXIAL, 2.5, [2, 0, 4, 1, 3], [5, 4, 3, 2, 1]),
    ("oblique, files shuffled", tuple(_rotation(0.5, 0.3)[:, :2].T.ravel()), 3.0, [3, 1, 4, 0, 2], [1, 2, 3, 4, 5]),
    ("coronal, reversed", (1.0, 0.0, 0.0, 0.0, 0.0, -1.0), 1.25, [4, 3, 2, 1, 0], [1, 2, 3, 4, 5]),
]


@pytest.mark.parametrize(
    ("orientation", "step", "file_order", "instances"),
    [c[1:] for c in GEOMETRY_CASES],
    ids=[c[0] for c in GEOMETRY_CASES],
)
def test_geometric_order_affine_and_spacing(write_series, ct_volume, phi_dir, orientation, step, file_order, instances):
    """Whatever the file order and InstanceNumbers, slices come out in ascending position along the normal."""
    iop = np.asarray(orientation)
    normal = np.cross(iop[:3], iop[3:])
    geometric = ct_volume(5)  # slice k at origin + k * step * normal
    positions = np.array([10.0, -20.0, 30.0]) + np.arange(5)[:, None] * step * normal
    write_series(
        geometric[file_order],
        positions=positions[file_order],
        orientation=orientation,
        pixel_spacing=PIXEL_SPACING,
        instance_numbers=instances,
    )
    volume = _load_only_series(phi_dir)
    np.testing.assert_array_equal(volume.array, geometric)
    assert volume.array.dtype == np.float32 and volume.shape == (5, 64, 64) and volume.num_slices == 5
    np.testing.assert_allclose(volume.spacing, (step, *PIXEL_SPACING), rtol=1e-6)
    _check_geometry(volume, positions, iop)
    assert volume.warnings == []


def test_datasets_and_files_follow_slice_order(write_series, ct_volume, phi_dir):
    files = write_series(ct_volume(3), positions=[[0, 0, 8.0], [0, 0, 0.0], [0, 0, 4.0]])
    volume = _load_only_series(phi_dir)
    assert volume.files == [files[1], files[2], files[0]]
    assert all("PixelData" not in ds and ds.Modality == "CT" for ds in volume.datasets)  # headers, pixels dropped


def test_gap_is_reported_and_median_step_used(write_series, ct_volume, phi_dir, caplog, assert_no_phi):
    z = [0.0, 5.0, 10.0, 20.0, 25.0]  # a slice missing between 10 and 20
    write_series(ct_volume(5), positions=[[0.0, 0.0, p] for p in z])
    with caplog.at_level(logging.WARNING):
        volume = _load_only_series(phi_dir)
    (warning,) = volume.warnings
    assert "non-uniform slice spacing" in warning and "from 5.000 to 10.000 mm (median 5.000 mm)" in warning
    assert "1-03.dcm -> 1-04.dcm: 10.000 mm" in warning and warning in caplog.text
    assert volume.spacing[0] == pytest.approx(5.0)
    np.testing.assert_allclose(volume.affine[:3, 2], [0.0, 0.0, 5.0])
    assert_no_phi(caplog.text)
    # volumes are measured with each slice's own extent: the slices beside the gap are 7.5 mm thick, not 5
    np.testing.assert_allclose(volume.slice_thickness, [5.0, 5.0, 7.5, 7.5, 5.0])
    mask = np.ones((5, 2, 2), np.uint8)
    measured = mask_measurements(mask, (5.0, 1.0, 1.0), slice_thickness=volume.slice_thickness)
    assert measured["volume_ml"] == pytest.approx(4 * 30.0 / 1000.0)  # the 25 mm span plus half a step at each end
    assert mask_measurements(mask, (5.0, 1.0, 1.0))["volume_ml"] == pytest.approx(4 * 25.0 / 1000.0)


def test_small_jitter_is_within_tolerance(write_series, ct_volume, phi_dir):
    write_series(ct_volume(4), positions=[[0.0, 0.0, p] for p in (0.0, 5.1, 9.95, 15.0)])
    assert _load_only_series(phi_dir).warnings == []


def test_duplicate_position_keeps_lowest_instance_and_says_which(write_series, ct_volume, phi_dir, caplog):
    volume_in = ct_volume(4)
    write_series(volume_in, positions=[[0.0, 0.0, p] for p in (0.0, 5.0, 5.0, 10.0)], instance_numbers=[1, 7, 3, 4])
    with caplog.at_level(logging.WARNING):
        volume = _load_only_series(phi_dir)
    assert volume.num_slices == 3
    np.testing.assert_array_equal(volume.array, volume_in[[0, 2, 3]])  # 1-03.dcm (InstanceNumber 3) kept
    (warning,) = volume.warnings
    assert "duplicate slice position 5.000 mm" in warning
    assert "kept 1-03.dcm (InstanceNumber 3), dropped 1-02.dcm (InstanceNumber 7)" in warning
    assert volume.spacing[0] == pytest.approx(5.0) and warning in caplog.text


def test_sheared_stack_keeps_the_shear_in_the_affine(write_series, ct_volume, phi_dir):
    positions = np.array([[0.0, 0.3 * k, 2.0 * k] for k in range(4)])  # gantry tilt: y drifts along z
    write_series(ct_volume(4), positions=positions, pixel_spacing=PIXEL_SPACING)
    volume = _load_only_series(phi_dir)
    assert "sheared by 8.5 degrees" in volume.warnings[0]
    _check_geometry(volume, positions, np.asarray(AXIAL))
    assert volume.spacing[0] == pytest.approx(2.0)


def test_single_slice_spacing_from_slice_thickness(write_series, ct_volume, phi_dir):
    write_series(ct_volume(1), slice_thickness=3.0)
    volume = _load_only_series(phi_dir)
    assert volume.spacing[0] == 3.0 and "single slice" in volume.warnings[0]
    np.testing.assert_allclose(volume.affine[:3, 2], [0.0, 0.0, 3.0])


# ---- values: rescale, MONOCHROME1, compressed transfer syntaxes ----


def _rewrite(path: Path, **changes) -> None:
    ds = pydicom.dcmread(path)
    stored = changes.pop("stored", None)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    if stored is not None:
        ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path)


def test_monochrome1_and_slope_intercept_give_the_same_hu(write_series, ct_volume, phi_dir):
    volume_in = ct_volume(3)
    files = write_series(volume_in)
    stored = volume_in + 1024  # what write_ct_series stored (12 bits, intercept -1024)
    _rewrite(files[0], PhotometricInterpretation="MONOCHROME1", stored=4095 - stored[0])
    _rewrite(files[1], RescaleSlope=2, RescaleIntercept=-2048, stored=(volume_in[1] + 2048) / 2)
    _rewrite(files[2], RescaleSlope=0.5, RescaleIntercept=-1000, stored=(volume_in[2] + 1000) * 2)
    np.testing.assert_array_equal(_load_only_series(phi_dir).array, volume_in)


@pytest.mark.parametrize("transfer_syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless], ids=lambda ts: ts.name)
def test_compressed_series_decodes_to_identical_hu(write_series, ct_volume, phi_dir, transfer_syntax):
    files = write_series(ct_volume(3), transfer_syntax=transfer_syntax)
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == transfer_syntax
    np.testing.assert_array_equal(_load_only_series(phi_dir).array, ct_volume(3))


# ---- refusals: each names the series label, the file by file name, and the problem ----


def _jpeg_xl(path: Path) -> None:
    """Relabel a slice as JPEG XL Lossless, which pydicom 3.0 has no decoder for (the bytes are never decoded)."""
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.110"
    ds.PixelData = encapsulate([b"\xff\x0a" + bytes(64)])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, implicit_vr=False, little_endian=True, force_encoding=True)


def _corrupt_rle(path: Path) -> None:
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.PixelData = encapsulate([bytes(64)])  # an RLE header declaring no segments
    ds.save_as(path)


def _delete(keyword: str):
    def damage(path: Path) -> None:
        ds = pydicom.dcmread(path)
        delattr(ds, keyword)
        ds.save_as(path)

    return damage


def _malformed_number(keyword: str, tag: tuple[int, int]):
    """Overwrite an integer-string attribute with '1A', as a broken exporter writes it (pydicom would refuse)."""

    def damage(path: Path) -> None:
        _rewrite(path, **{keyword: 1})
        raw = bytearray(path.read_bytes())
        at = raw.find(struct.pack("<HH", *tag))
        length = struct.unpack("<H", raw[at + 6 : at + 8])[0]
        raw[at + 8 : at + 8 + length] = b"1A".ljust(length, b" ")
        path.write_bytes(bytes(raw))

    return damage


ERROR_CASES = [
    # (damage to the second of three slices, words expected after "<label>: 1-02.dcm: ")
    (_malformed_number("NumberOfFrames", (0x0028, 0x0008)), "NumberOfFrames is '1A', not a whole number"),
    (_delete("ImagePositionPatient"), "no ImagePositionPatient; without it the slice geometry is unknown"),
    (_delete("ImageOrientationPatient"), "no ImageOrientationPatient"),
    (_delete("PixelSpacing"), "no PixelSpacing"),
    (lambda p: _rewrite(p, ImagePositionPatient=[0.0, 1.0]), "ImagePositionPatient [0.0, 1.0] is not 3 numbers"),
    (lambda p: _rewrite(p, PixelSpacing=[0.7, 0.9]), "PixelSpacing [0.7, 0.9] differs from 1-01.dcm's [0.7, 0.7]"),
    (lambda p: _rewrite(p, NumberOfFrames=2), "multi-frame object (2 frames"),
    (lambda p: _rewrite(p, PhotometricInterpretation="RGB"), "PhotometricInterpretation 'RGB'"),
    (_jpeg_xl, "transfer syntax 1.2.840.10008.1.2.4.110 (JPEG XL Lossless) is not supported by pydicom"),
    (_corrupt_rle, "cannot decode pixel data"),
]


@pytest.mark.parametrize(("damage", "expected"), ERROR_CASES)
def test_unloadable_slice_is_refused_naming_the_file(write_series, ct_volume, phi_dir, assert_no_phi, damage, expected):
    files = write_series(ct_volume(3))
    damage(files[1])
    (series,), _ = scan_dicom_folder(phi_dir)
    with pytest.raises(DicomSeriesError) as info:
        load_series_volume(series)
    message = str(info.value)
    assert message.startswith(f"{series.label}: 1-02.dcm: ") and expected in message, message
    assert_no_phi(message)


def test_file_truncated_after_the_scan_is_refused(write_series, ct_volume, phi_dir, assert_no_phi):
    files = write_series(ct_volume(3))
    (series,), _ = scan_dicom_folder(phi_dir)
    files[2].write_bytes(files[2].read_bytes()[:-500])
    with pytest.raises(DicomSeriesError, match=r": 1-03\.dcm: truncated or corrupt DICOM file") as info:
        load_series_volume(series)
    assert_no_phi(str(info.value))


def test_invalid_tolerance(write_series, ct_volume, phi_dir):
    write_series(ct_volume(2))
    (series,), _ = scan_dicom_folder(phi_dir)
    with pytest.raises(ValueError, match="spacing_tolerance must be positive, got 0"):
        load_series_volume(series, spacing_tolerance=0)


# ---- the real two-series study in ../shared/data/dicom (read in place) ----


@pytest.mark.skipif(not REAL_STUDY.is_dir(), reason=f"shared DICOM study {REAL_STUDY} not present")
def test_real_two_series_study(caplog):
    """2 CT series x 30 slices of 512x512, uniform 8 mm, 0.646 mm pixels, HU from -1024 (air) to bone."""
    with caplog.at_level(logging.INFO):
        series, skipped = scan_dicom_folder(REAL_STUDY)
        chosen, rejected = select_series(series, SeriesRules(min_slices=10))
    assert [s.name for s in (f.path for f in skipped)] == ["LICENSE"]
    assert [s.num_slices for s in chosen] == [30, 30] and rejected == []
    assert len({s.label for s in chosen}) == 2 and len({s.study_label for s in chosen}) == 1
    for s in chosen:
        start = time.perf_counter()
        volume = load_series_volume(s)
        elapsed = time.perf_counter() - start
        assert volume.shape == (30, 512, 512) and volume.warnings == []
        np.testing.assert_allclose(volume.spacing, (8.0, 0.646484375, 0.646484375))
        np.testing.assert_allclose(volume.affine[:3, 2], [0.0, 0.0, 8.0])  # ascending z: feet to head
        assert volume.array.min() == -1024.0 and 1000.0 < volume.array.max() < 3072.0
        assert (volume.array[15] < -500).mean() > 0.3  # air and lungs
        assert elapsed < 2.0  # about 0.1 s on one busy core; generous for shared machines
    for secret in ("Lung_Dx-A0002", "ThoraxAThoraxRoutine", "34834"):  # folder names
        assert secret not in caplog.text
