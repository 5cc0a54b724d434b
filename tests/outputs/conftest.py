"""Synthetic CT series for the output tests: minimal but valid CT Image Storage datasets built with pydicom, and
masks and label maps of one or several structures over them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from pipeline.segments import Structure, structures_from_labels

ORG_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's UID root, with deterministic entropy per test object


def _uid(*parts: object) -> str:
    return generate_uid(prefix=ORG_ROOT, entropy_srcs=[str(p) for p in parts])


def make_ct_datasets(
    volume_hu: np.ndarray,
    *,
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    pixel_spacing: Sequence[float] = (0.7, 0.8),
    origin: Sequence[float] = (-11.0, -12.5, 40.0),
    slice_step: float = 2.5,
    series_number: int = 2,
    patient_name: str = "Demo^Synthetic",
    tag: str = "demo",
) -> list[Dataset]:
    """One CT series, one single-frame dataset per plane of ``volume_hu`` (N, H, W), slice k at
    ``origin + k * slice_step * normal``; stored uint16 with RescaleIntercept -1024 like a scanner's."""
    volume_hu = np.asarray(volume_hu)
    n_slices, rows, columns = volume_hu.shape
    row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row_dir, col_dir)
    study_uid, series_uid, frame_uid = _uid(tag, "study"), _uid(tag, "series"), _uid(tag, "frame")
    datasets = []
    for k in range(n_slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = _uid(tag, "sop", k)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient_name, "DEMO0001", "", "O"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study_uid, "20240101", "120000"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "CT", series_uid, series_number
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
        ds.Manufacturer = "synthetic"
        ds.InstanceNumber, ds.AcquisitionNumber = k + 1, 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin, float) + k * slice_step * normal]
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.SliceThickness = abs(slice_step)
        ds.KVP = 120
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = rows, columns
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = np.clip(volume_hu[k] + 1024, 0, 65535).astype("<u2").tobytes()
        datasets.append(ds)
    return datasets


def _dicom_affine(datasets: Sequence[Dataset]) -> np.ndarray:
    """(column, row, slice, 1) -> LPS mm, by hand from IOP, PixelSpacing and the first two IPPs."""
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(v) for v in datasets[0].PixelSpacing)
    affine = np.eye(4)
    affine[:3, 0] = iop[:3] * col_spacing
    affine[:3, 1] = iop[3:] * row_spacing
    ipp0 = np.asarray(datasets[0].ImagePositionPatient, float)
    if len(datasets) > 1:
        affine[:3, 2] = np.asarray(datasets[1].ImagePositionPatient, float) - ipp0
    else:
        affine[:3, 2] = np.cross(iop[:3], iop[3:]) * float(datasets[0].SliceThickness)
    affine[:3, 3] = ipp0
    return affine


@pytest.fixture
def ct_datasets() -> Callable[..., list[Dataset]]:
    """``ct_datasets(volume_hu (N, H, W), **geometry) -> list[Dataset]``; see ``make_ct_datasets``."""
    return make_ct_datasets


@pytest.fixture
def dicom_affine() -> Callable[[Sequence[Dataset]], np.ndarray]:
    """``dicom_affine(datasets) -> (4, 4)`` (column, row, slice, 1) -> LPS mm, computed by hand from the headers."""
    return _dicom_affine


@pytest.fixture
def ct_volume() -> np.ndarray:
    """(3, 32, 32) float32 HU: air outside a body disc of soft tissue holding two darker lung blobs, seeded."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    body = (yy - 16) ** 2 + (xx - 16) ** 2 < 14**2
    lungs = ((yy - 15) ** 2 / 36 + (xx - 10) ** 2 / 9 < 1) | ((yy - 15) ** 2 / 36 + (xx - 22) ** 2 / 9 < 1)
    plane = np.where(body, np.where(lungs, -850.0, 40.0), -1000.0)
    return np.stack([plane + rng.normal(0, 10, plane.shape) for _ in range(3)]).astype(np.float32)


@pytest.fixture
def lung_mask(ct_volume: np.ndarray) -> np.ndarray:
    """(3, 32, 32) uint8: the lung blobs of ``ct_volume`` on slices 1 and 2 (slice 0 empty, so it is omitted)."""
    mask = (ct_volume < -400) & (ct_volume > -950)
    mask[0] = False
    return mask.astype(np.uint8)


@pytest.fixture
def three_structures() -> list[Structure]:
    """Right lung (1), left lung (2) and heart (3), with their SNOMED CT codes and colours."""
    return structures_from_labels({"0": "background", "1": "right lung", "2": "left lung", "3": "heart"})


@pytest.fixture
def label_map(lung_mask: np.ndarray) -> np.ndarray:
    """(3, 32, 32) uint8 label map over ``ct_volume``: its lung blobs as right lung (1, image left, as on a PA view)
    and left lung (2) on slices 1 and 2, a heart disc (3) below them on slice 1 only; slice 0 empty."""
    labels = lung_mask.copy()
    labels[:, :, 16:] *= 2
    yy, xx = np.mgrid[:32, :32]
    labels[1][(yy - 25) ** 2 + (xx - 16) ** 2 < 3**2] = 3
    return labels


REAL_STUDY = Path(__file__).resolve().parents[3] / "shared" / "data" / "dicom"
"""The real two-series chest CT study beside the repository (not part of it); its tests skip without it."""


@pytest.fixture
def real_lung_series() -> tuple[list[Dataset], np.ndarray]:
    """The first series of the real study, sorted along its normal, as headers only (as inference passes them), and a
    rough lung mask of it (N, H, W) bool: air below -400 HU inside the filled body outline."""
    from scipy import ndimage

    series_dirs = sorted(p for p in REAL_STUDY.glob("*/*/*") if p.is_dir())
    if not series_dirs:
        pytest.skip(f"real study not present at {REAL_STUDY}")
    datasets = [pydicom.dcmread(f) for f in sorted(series_dirs[0].glob("*.dcm"))]
    normal = np.cross(*np.asarray(datasets[0].ImageOrientationPatient, float).reshape(2, 3))
    datasets.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)))
    hu = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in datasets])
    body = np.stack([ndimage.binary_fill_holes(plane) for plane in hu > -400])
    for ds in datasets:
        del ds.PixelData
    return datasets, body & (hu < -400)
