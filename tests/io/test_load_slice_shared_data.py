"""LoadSlice on the real images in ``../shared/data`` (read in place); skipped when that folder is absent."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from pipeline.io import LoadSlice, is_dicom_file

# tests/io/<this file> -> parents[2] is the repository, parents[3] the folder holding it and ``shared``.
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} not present")


def _first_row(csv_path: Path) -> dict[str, str]:
    """First data row of a CSV file."""
    with csv_path.open(newline="") as f:
        return next(csv.DictReader(f))


def test_lung_ct_image_and_mask() -> None:
    """First lung_ct pair: int16 HU TIFF and {0, 1} LZW mask, aligned (the lungs are air-filled)."""
    name = _first_row(DATA / "lung_ct" / "pairs.csv")["filename"]
    image_path, mask_path = DATA / "lung_ct" / "images" / name, DATA / "lung_ct" / "masks" / name
    image, mask = LoadSlice()(image_path), LoadSlice()(mask_path)
    assert image.shape == mask.shape == (1, 512, 512)
    assert image.dtype == mask.dtype == torch.float32
    hu = image.numpy()[0]
    assert -2100 <= hu.min() <= -900
    assert 300 <= hu.max() <= 3100
    np.testing.assert_array_equal(hu, np.asarray(Image.open(image_path), dtype=np.float32))
    labels = mask.numpy()[0]
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert 0.05 < labels.mean() < 0.6
    assert hu[labels == 1].mean() < -500  # mask over lung tissue: orientation of image and mask agree


def test_kvasir_jpeg_rgb() -> None:
    """First kvasir_sample image loads as (3, H, W) 8-bit RGB; its JPEG mask thresholds to a non-empty polyp."""
    row = _first_row(DATA / "kvasir_sample" / "pairs.csv")
    image_path = DATA / "kvasir_sample" / "images" / row["image"]
    image = LoadSlice()(image_path)
    width, height = Image.open(image_path).size
    assert image.shape == (3, height, width)
    assert image.min() >= 0 and image.max() <= 255
    assert not torch.equal(image[0], image[1])  # colour, not gray copied into 3 channels
    mask = LoadSlice()(DATA / "kvasir_sample" / "masks" / row["mask"])
    assert mask.shape[1:] == image.shape[1:]
    assert 0.0 < float((mask[0] > 127).float().mean()) < 0.9


def test_dicom_ct_slice() -> None:
    """One real CT DICOM: 512x512 HU (stored + RescaleIntercept) with air near -1000, and its pixel spacing."""
    path = sorted((DATA / "dicom").rglob("*.dcm"))[0]
    assert is_dicom_file(path)
    image = LoadSlice()(path)
    assert image.shape == (1, 512, 512)
    hu = image.numpy()[0]
    assert -1100 <= hu.min() <= -900
    assert hu.max() > 0
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(hu, expected.astype(np.float32))
    np.testing.assert_allclose(image.meta["spacing"], [float(v) for v in ds.PixelSpacing])
