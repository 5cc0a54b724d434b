"""NIfTI label files: a voxel lands on the DICOM patient coordinate computed by hand; the mask reads back unchanged."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from pipeline.outputs import write_label_nifti

_C, _S = np.cos(np.deg2rad(30)), np.sin(np.deg2rad(30))
GEOMETRY_CASES = [
    # (name, orientation (IOP), pixel spacing (row, column), slice step, shape (N, H, W))
    ("axial", (1, 0, 0, 0, 1, 0), (0.7, 0.8), 2.5, (3, 32, 24)),
    ("axial_descending", (1, 0, 0, 0, 1, 0), (0.7, 0.7), -5.0, (3, 16, 16)),
    ("coronal", (1, 0, 0, 0, 0, -1), (0.5, 0.9), 3.0, (3, 20, 32)),
    ("oblique", (_C, _S, 0, 0, 0, -1), (0.6, 1.1), 2.0, (3, 24, 32)),
    ("oblique_double", (_C, _S, 0, -_S * _S, _C * _S, -_C), (0.6, 0.6), 1.5, (3, 16, 16)),
    ("one_slice", (1, 0, 0, 0, 1, 0), (0.7, 0.7), 2.5, (1, 16, 16)),
]


def _patient_lps(ds, row: int, column: int) -> np.ndarray:
    """DICOM PS3.3 C.7.6.2.1.1: P = IPP + column * column_spacing * row_dir + row * row_spacing * col_dir."""
    iop = np.asarray(ds.ImageOrientationPatient, float)
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    return np.asarray(ds.ImagePositionPatient, float) + column * column_spacing * iop[:3] + row * row_spacing * iop[3:]


@pytest.mark.parametrize(
    ("name", "orientation", "spacing", "step", "shape"), GEOMETRY_CASES, ids=[c[0] for c in GEOMETRY_CASES]
)
def test_voxel_maps_to_dicom_patient_coordinate(
    tmp_path, ct_datasets, dicom_affine, name, orientation, spacing, step, shape
):
    datasets = ct_datasets(
        np.zeros(shape, np.float32), orientation=orientation, pixel_spacing=spacing, slice_step=step, tag=name
    )
    k, j, i = shape[0] - 1, shape[1] - 3, 2  # slice, row, column: asymmetric on purpose
    mask = np.zeros(shape, np.uint8)
    mask[k, j, i] = 1
    path = write_label_nifti(mask, dicom_affine(datasets), tmp_path / f"{name}.nii.gz")
    image = nib.load(path)
    data = np.asarray(image.dataobj)
    assert data.dtype == np.uint8 and data.shape == (shape[2], shape[1], shape[0])
    (voxel,) = np.argwhere(data == 1)
    ras = nib.affines.apply_affine(image.affine, voxel)
    expected_lps = _patient_lps(datasets[k], row=j, column=i)
    np.testing.assert_allclose(ras * [-1, -1, 1], expected_lps, atol=1e-4)
    np.testing.assert_array_equal(data.transpose(2, 1, 0), mask)
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    np.testing.assert_allclose(image.get_qform(), image.get_sform(), atol=1e-4)


def test_label_values_and_header(tmp_path):
    mask = np.zeros((2, 8, 8), np.uint8)
    mask[0, 2:5, 3:6], mask[1, 1, 1] = 1, 3
    image = nib.load(write_label_nifti(mask, np.diag([0.7, 0.7, 2.0, 1.0]), tmp_path / "labels.nii"))
    np.testing.assert_array_equal(np.asarray(image.dataobj).transpose(2, 1, 0), mask)
    assert image.header.get_intent()[0] == "label"
    assert image.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(image.header.get_zooms(), (0.7, 0.7, 2.0))


_LABELS = np.random.default_rng(7).integers(0, 3, size=(4, 12, 10))
LAYOUT_CASES = [
    # (name, mask): every memory layout and dtype a caller may hand over reads back as the same labels
    ("uint8_c", _LABELS.astype(np.uint8)),
    ("int64", _LABELS),
    ("bool", _LABELS > 0),
    ("fortran", np.asfortranarray(_LABELS.astype(np.uint8))),
    ("flipped_view", _LABELS.astype(np.uint8)[:, ::-1, :]),
    ("strided_view", np.repeat(_LABELS.astype(np.uint8), 2, axis=2)[:, :, ::2]),
]


@pytest.mark.parametrize(("name", "mask"), LAYOUT_CASES, ids=[c[0] for c in LAYOUT_CASES])
def test_any_memory_layout_reads_back(tmp_path, name, mask):
    image = nib.load(write_label_nifti(mask, np.diag([0.7, 0.7, 2.0, 1.0]), tmp_path / f"{name}.nii.gz"))
    data = np.asarray(image.dataobj)
    assert data.dtype == np.uint8
    np.testing.assert_array_equal(data.transpose(2, 1, 0), np.asarray(mask).astype(np.uint8))


def test_atomic_replace(tmp_path):
    path = tmp_path / "mask.nii.gz"
    write_label_nifti(np.ones((2, 4, 4), bool), np.eye(4), path)
    write_label_nifti(np.zeros((2, 4, 4), bool), np.eye(4), path)
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]
    assert not np.asarray(nib.load(path).dataobj).any()


BAD_CASES = [
    # (mask, affine, file name, message fragment)
    (np.zeros((4, 4), np.uint8), np.eye(4), "m.nii.gz", "must be"),
    (np.full((1, 4, 4), 300), np.eye(4), "m.nii.gz", "0..255"),
    (np.full((1, 4, 4), -1), np.eye(4), "m.nii.gz", "0..255"),
    (np.zeros((1, 4, 4)), np.eye(3), "m.nii.gz", "4x4"),
    (np.zeros((1, 4, 4)), np.diag([1.0, 1.0, 0.0, 1.0]), "m.nii.gz", "invertible"),
    (np.zeros((1, 4, 4)), np.full((4, 4), np.nan), "m.nii.gz", "finite"),
    (np.zeros((1, 4, 4)), np.eye(4), "m.png", r"\.nii"),
]


@pytest.mark.parametrize(("mask", "affine", "file_name", "message"), BAD_CASES)
def test_bad_input(tmp_path, mask, affine, file_name, message):
    with pytest.raises(ValueError, match=message):
        write_label_nifti(mask, affine, tmp_path / file_name)
    assert not list(tmp_path.iterdir())


def test_structure_values_are_kept(tmp_path, ct_volume, label_map, three_structures, ct_datasets, dicom_affine):
    """A label map of several structures is written in the dataset's values (1 right lung, 2 left lung, 3 heart),
    each voxel where it was: no binarising, no renumbering."""
    path = write_label_nifti(label_map, dicom_affine(ct_datasets(ct_volume)), tmp_path / "labels.nii.gz")
    data = np.asarray(nib.load(path).dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(data, label_map)
    assert set(np.unique(data)) == {0, *(s.value for s in three_structures)}
