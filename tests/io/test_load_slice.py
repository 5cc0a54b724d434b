"""LoadSlice / LoadSliced: one asymmetric picture saved in every supported format loads to one array and orientation."""

from __future__ import annotations

import gzip
import re
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor, NibabelReader, PILReader, PydicomReader
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from pipeline.io import (
    SUPPORTED_SUFFIXES,
    LoadSlice,
    LoadSliced,
    SliceFileNotFoundError,
    SliceReadError,
    file_suffix,
    is_dicom_file,
    reader_for,
)

H, W = 24, 40
# Background 10, a bright 200 block in the top-left quadrant and a dimmer 120 marker bottom-right: every flip,
# rotation or transpose moves the block (and a transpose changes the shape).
PICTURE = np.full((H, W), 10, dtype=np.uint8)
PICTURE[3:11, 4:16] = 200
PICTURE[16:21, 30:37] = 120
BLOCK_CENTROID = (6.5, 9.5)  # (row, column) of the 200 block
# Hounsfield units: 8 * PICTURE - 1024 spans -944 (air-like) to 576; as DICOM stored 4 * PICTURE, slope 2.
HU = PICTURE.astype(np.float32) * 8 - 1024
MASK = (PICTURE == 200).astype(np.uint8)
# Three distinct channels, so a channel swap or a grayscale conversion is detected.
RGB = np.stack([PICTURE, 255 - PICTURE, PICTURE // 2], axis=-1)
# DICOM geometry: row spacing 0.5 mm, column spacing 0.8 mm, rows along +y (LPS), columns along +x.
PIXEL_SPACING = (0.5, 0.8)
DEPTH = 5  # slices of the synthetic NIfTI volumes
LPS_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS affine of an LPS-oriented NIfTI (what ITK writes)

Writer = Callable[[Path], tuple[Path, np.ndarray, dict[str, Any]]]


def _chw(array: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) -> (C, H, W) float32."""
    array = np.asarray(array, dtype=np.float32)
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def _block_centroid(channel: np.ndarray) -> tuple[float, float]:
    """(row, column) centroid of the pixels in the top quarter of the channel's value range."""
    lo, hi = float(channel.min()), float(channel.max())
    rows, cols = np.nonzero(channel > lo + 0.75 * (hi - lo))
    return float(rows.mean()), float(cols.mean())


def write_dicom(
    path: Path,
    stored: np.ndarray,
    photometric: str = "MONOCHROME2",
    slope: float = 2.0,
    intercept: float = -1024.0,
    bits_stored: int = 12,
    pixel_data: bool = True,
) -> Path:
    """Write a single-frame 16-bit CT DICOM file (Explicit VR Little Endian) with pydicom.

    Args:
        path: output file (any name; the preamble + 'DICM' header is always written).
        stored: (H, W) stored pixel values; a signed dtype writes PixelRepresentation 1 (int16).
        photometric: PhotometricInterpretation.
        slope: RescaleSlope.
        intercept: RescaleIntercept.
        bits_stored: BitsStored.
        pixel_data: write PixelData; ``False`` gives an object without an image.

    Returns:
        ``path``.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientName = "Secret^Patient"
    ds.PatientID = "PID-4711"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    signed = np.issubdtype(stored.dtype, np.signedinteger)
    ds.PixelRepresentation = int(signed)
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.ImagePositionPatient = [-100.0, -50.0, 20.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = list(PIXEL_SPACING)
    if pixel_data:
        ds.PixelData = np.ascontiguousarray(stored, dtype="<i2" if signed else "<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_volume(path: Path, affine: np.ndarray = LPS_AFFINE) -> list[np.ndarray]:
    """Write a (W, H, DEPTH) float32 NIfTI volume whose stored slice ``k`` displays as ``HU + 100 * k``.

    Returns:
        the expected display array of each stored slice ``k`` (H, W).
    """
    slices = [HU + 100.0 * k for k in range(DEPTH)]
    nib.save(nib.Nifti1Image(np.stack([s.T for s in slices], axis=-1), affine), path)
    return slices


# ---- writers: each saves the picture in one format and returns (path, expected (C, H, W), LoadSlice kwargs) ----


def _png8(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    Image.fromarray(PICTURE).save(tmp / "img.png")
    return tmp / "img.png", _chw(PICTURE), {}


def _png16(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    stored = PICTURE.astype(np.uint16) * 257  # up to 51400: beyond 8 bits
    Image.fromarray(stored).save(tmp / "img16.png")
    assert Image.open(tmp / "img16.png").mode.startswith("I")
    return tmp / "img16.png", _chw(stored), {}


def _png_rgb(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    Image.fromarray(RGB).save(tmp / "rgb.png")
    return tmp / "rgb.png", _chw(RGB), {}


def _png_rgba(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    rgba = np.concatenate([RGB, np.full((H, W, 1), 128, dtype=np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp / "rgba.png")
    return tmp / "rgba.png", _chw(RGB), {}


def _indexed(pixels: np.ndarray, path: Path, transparency: int | None = None) -> Path:
    """Save (H, W) or (H, W, 3) ``pixels`` as a palette PNG whose palette lists the colours from the most frequent,
    as an optimiser writes it: no index equals the grey or colour it stands for."""
    flat = pixels.reshape(H * W, -1)
    colours, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    index = np.empty(len(order), dtype=np.uint8)
    index[order] = np.arange(len(order))
    picture = Image.frombytes("P", (W, H), index[inverse.ravel()].tobytes())
    picture.putpalette(np.repeat(colours[order], 3 // colours.shape[1], axis=1).astype(np.uint8).tobytes())
    picture.save(path, **({"transparency": transparency} if transparency is not None else {}))
    assert Image.open(path).mode == "P" and not np.isin(np.asarray(Image.open(path)), np.unique(pixels)).all()
    return path


def _png_palette_grey(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    return _indexed(PICTURE, tmp / "grey_palette.png"), _chw(PICTURE), {}


def _png_palette_rgb(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    return _indexed(RGB, tmp / "rgb_palette.png"), _chw(RGB), {}


def _tiff_palette_grey(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    # as ImageJ saves an 8-bit image with a lookup table
    return _indexed(PICTURE, tmp / "grey_palette.tif"), _chw(PICTURE), {}


def _png_palette_transparent(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    # a transparent palette entry (the background's) is dropped like any alpha: the greys as they show
    return _indexed(PICTURE, tmp / "transparent_palette.png", transparency=0), _chw(PICTURE), {}


def _tiff_hu(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    Image.fromarray(HU.astype(np.int16)).save(tmp / "hu.tif")
    return tmp / "hu.tif", _chw(HU), {}


def _tiff_lzw(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    Image.fromarray(PICTURE).save(tmp / "lzw.tiff", compression="tiff_lzw")
    assert Image.open(tmp / "lzw.tiff").info["compression"] == "tiff_lzw"
    return tmp / "lzw.tiff", _chw(PICTURE), {}


def _tiff_mask_lzw(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    Image.fromarray(MASK).save(tmp / "mask.tif", compression="tiff_lzw")
    return tmp / "mask.tif", _chw(MASK), {}


def _jpeg_gray(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    Image.fromarray(PICTURE).save(tmp / "gray.jpg", quality=95)
    return tmp / "gray.jpg", _chw(PICTURE), {}


def _jpeg_rgb(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    Image.fromarray(RGB).save(tmp / "rgb.jpeg", quality=95, subsampling=0)
    return tmp / "rgb.jpeg", _chw(RGB), {}


def _dicom_mono2(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    # loaded = slope * stored + intercept = 2 * (4 * PICTURE) - 1024 = HU
    return write_dicom(tmp / "ct.dcm", PICTURE.astype(np.uint16) * 4), _chw(HU), {}


def _dicom_mono1(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    # MONOCHROME1 stores bright as low: stored 4095 - 4 * PICTURE (12 bits); inverted back to bright = high.
    stored = 4095 - PICTURE.astype(np.uint16) * 4
    return write_dicom(tmp / "mono1.dicom", stored, photometric="MONOCHROME1"), _chw(HU), {}


def _dicom_signed(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    # signed stored values are HU already (slope 1, intercept 0)
    path = write_dicom(tmp / "signed.dcm", HU.astype(np.int16), slope=1.0, intercept=0.0, bits_stored=16)
    return path, _chw(HU), {}


def _dicom_mono1_signed(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    # signed 16-bit window [-32768, 32767]: stored -1 - HU inverts to HU
    stored = (-1 - HU).astype(np.int16)
    path = write_dicom(tmp / "mono1s.dcm", stored, photometric="MONOCHROME1", slope=1.0, intercept=0.0, bits_stored=16)
    return path, _chw(HU), {}


def _dicom_no_suffix(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    return write_dicom(tmp / "IM000001", PICTURE.astype(np.uint16) * 4), _chw(HU), {}


def _dicom_uid_name(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    # named by its UID: the "suffix" .604 is not a supported one, the magic bytes decide
    return write_dicom(tmp / "1.2.840.113619.2.55.3.604", PICTURE.astype(np.uint16) * 4), _chw(HU), {}


def _nifti_2d(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    nib.save(nib.Nifti1Image(HU.T.copy(), LPS_AFFINE), tmp / "img.nii")
    return tmp / "img.nii", _chw(HU), {}


def _nifti_2d_gz(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    nib.save(nib.Nifti1Image(HU.T.copy(), LPS_AFFINE), tmp / "img.nii.gz")
    return tmp / "img.nii.gz", _chw(HU), {}


def _nifti_2d_ras(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    # RAS storage: i runs left to right and j posterior to anterior, both reversed with respect to LPS display.
    nib.save(nib.Nifti1Image(HU.T[::-1, ::-1].copy(), np.eye(4)), tmp / "ras.nii.gz")
    return tmp / "ras.nii.gz", _chw(HU), {}


def _nifti_single_slice_3d(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    nib.save(nib.Nifti1Image(HU.T[..., None].copy(), LPS_AFFINE), tmp / "one.nii.gz")
    return tmp / "one.nii.gz", _chw(HU), {}


def _nifti_3d(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    slices = write_volume(tmp / "vol.nii.gz")
    return tmp / "vol.nii.gz", _chw(slices[2]), {"slice_index": 2}


def _nifti_3d_z_flipped(tmp: Path) -> tuple[Path, np.ndarray, dict[str, Any]]:
    # k runs superior to inferior: slice_index 1 (second most inferior) is stored slice DEPTH - 2
    slices = write_volume(tmp / "volz.nii.gz", affine=np.diag([-1.0, -1.0, -1.0, 1.0]))
    return tmp / "volz.nii.gz", _chw(slices[DEPTH - 2]), {"slice_index": 1}


FORMAT_CASES: list[tuple[str, Writer, float]] = [
    # (id, writer, atol of the value comparison: 0 for lossless formats)
    ("png8", _png8, 0.0),
    ("png16", _png16, 0.0),
    ("png_rgb", _png_rgb, 0.0),
    ("png_rgba_drops_alpha", _png_rgba, 0.0),
    ("png_palette_grey_as_greys", _png_palette_grey, 0.0),
    ("png_palette_rgb_as_rgb", _png_palette_rgb, 0.0),
    ("png_palette_transparent_as_greys", _png_palette_transparent, 0.0),
    ("tiff_palette_grey_as_greys", _tiff_palette_grey, 0.0),
    ("tiff_int16_hu", _tiff_hu, 0.0),
    ("tiff_uint8_lzw", _tiff_lzw, 0.0),
    ("tiff_mask_lzw", _tiff_mask_lzw, 0.0),
    ("jpeg_gray", _jpeg_gray, 25.0),
    ("jpeg_rgb", _jpeg_rgb, 25.0),
    ("dicom_monochrome2_rescaled", _dicom_mono2, 0.0),
    ("dicom_monochrome1_inverted", _dicom_mono1, 0.0),
    ("dicom_signed_int16", _dicom_signed, 0.0),
    ("dicom_monochrome1_signed", _dicom_mono1_signed, 0.0),
    ("dicom_no_suffix", _dicom_no_suffix, 0.0),
    ("dicom_uid_name", _dicom_uid_name, 0.0),
    ("nifti_2d", _nifti_2d, 0.0),
    ("nifti_2d_gz", _nifti_2d_gz, 0.0),
    ("nifti_2d_ras", _nifti_2d_ras, 0.0),
    ("nifti_3d_one_slice", _nifti_single_slice_3d, 0.0),
    ("nifti_3d_slice_index", _nifti_3d, 0.0),
    ("nifti_3d_z_flipped", _nifti_3d_z_flipped, 0.0),
]


@pytest.mark.parametrize("writer, atol", [c[1:] for c in FORMAT_CASES], ids=[c[0] for c in FORMAT_CASES])
def test_every_format_loads_same_array_and_orientation(tmp_path: Path, writer: Writer, atol: float) -> None:
    """Each format loads to the expected (C, H, W) float32 values with the block in the top-left."""
    path, expected, kwargs = writer(tmp_path)
    out = LoadSlice(**kwargs)(path)
    assert isinstance(out, MetaTensor)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == expected.shape == ((3, H, W) if expected.shape[0] == 3 else (1, H, W))
    assert out.meta["filename_or_obj"] == str(path)
    actual = out.numpy()
    if atol:
        np.testing.assert_allclose(actual, expected, atol=atol)
        assert np.abs(actual - expected).mean() < 2.0
    else:
        np.testing.assert_array_equal(actual, expected)
    np.testing.assert_allclose(_block_centroid(actual[0]), BLOCK_CENTROID, atol=0.5)


@pytest.mark.parametrize("writer, atol", [c[1:] for c in FORMAT_CASES], ids=[c[0] for c in FORMAT_CASES])
def test_pixel_limit_refuses_every_format_by_its_header(tmp_path: Path, writer: Writer, atol: float) -> None:
    """One pixel fewer than the slice has: refused, naming the file and the limit; exactly its size: loaded."""
    path, expected, kwargs = writer(tmp_path)
    message = rf"{re.escape(str(path))}: {H}x{W} pixels, more than the limit of {H * W - 1}; refusing"
    with pytest.raises(SliceReadError, match=message):
        LoadSlice(max_pixels=H * W - 1, **kwargs)(path)
    assert tuple(LoadSlice(max_pixels=H * W, **kwargs)(path).shape) == expected.shape


def _png_declaring(path: Path, height: int, width: int) -> Path:
    """A valid 1 x 1 PNG whose header is rewritten to declare ``height`` x ``width`` (the data stays 1 pixel)."""
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(path)
    raw = bytearray(path.read_bytes())
    raw[16:24] = struct.pack(">II", width, height)  # IHDR: width, height
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))  # the chunk's CRC over type and data
    path.write_bytes(bytes(raw))
    return path


def test_a_10000_by_10000_png_is_refused_without_decoding(tmp_path: Path) -> None:
    """The issue's case: the default limit refuses it from the header, in milliseconds, with no memory spent."""
    path = _png_declaring(tmp_path / "huge.png", 10_000, 10_000)
    start = time.perf_counter()
    with pytest.raises(SliceReadError, match=r"huge.png: 10000x10000 pixels, more than the limit of 50,000,000"):
        LoadSlice()(path)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("writer", [_png8, _tiff_hu, _dicom_mono2, _nifti_2d_gz], ids=["png", "tiff", "dcm", "nii"])
def test_call_slice_index_overrides_constructor(tmp_path: Path, writer: Writer) -> None:
    """A 2D file ignores slice_index; a call's slice_index overrides the constructor's for a volume."""
    path, expected, _ = writer(tmp_path)
    np.testing.assert_array_equal(LoadSlice(slice_index=3)(path).numpy(), expected)
    slices = write_volume(tmp_path / "vol.nii.gz")
    np.testing.assert_array_equal(LoadSlice(slice_index=3)(tmp_path / "vol.nii.gz", slice_index=1)[0], slices[1])


def test_dicom_geometry_and_no_patient_attributes(tmp_path: Path) -> None:
    """DICOM meta carries (row, column) spacing and a RAS affine, and no patient name or ID."""
    out = LoadSlice()(write_dicom(tmp_path / "ct.dcm", PICTURE.astype(np.uint16) * 4))
    np.testing.assert_allclose(out.meta["spacing"], PIXEL_SPACING)
    # row index moves along LPS +y (RAS -y) by 0.5 mm, column index along LPS +x (RAS -x) by 0.8 mm
    np.testing.assert_allclose(out.affine[:3, 0], [0.0, -0.5, 0.0])
    np.testing.assert_allclose(out.affine[:3, 1], [-0.8, 0.0, 0.0])
    np.testing.assert_allclose(out.affine[:3, 3], [100.0, 50.0, 20.0])
    text = repr(out.meta)
    assert "Secret" not in text
    assert "PID-4711" not in text


def test_nifti_affine_follows_display_order(tmp_path: Path) -> None:
    """The NIfTI meta affine maps (row, column, 0) of the chosen slice to RAS mm."""
    write_volume(tmp_path / "vol.nii.gz", affine=np.diag([-0.7, -0.9, 2.5, 1.0]))
    out = LoadSlice(slice_index=3)(tmp_path / "vol.nii.gz")
    assert out.meta["slice_index"] == 3
    np.testing.assert_allclose(out.affine[:3, 0], [0.0, -0.9, 0.0])  # rows follow j
    np.testing.assert_allclose(out.affine[:3, 1], [-0.7, 0.0, 0.0])  # columns follow i
    np.testing.assert_allclose(out.affine[:3, 3], [0.0, 0.0, 7.5])


def test_dtype_argument(tmp_path: Path) -> None:
    """``dtype`` sets the tensor dtype; the values are unchanged."""
    path, expected, _ = _tiff_hu(tmp_path)
    out = LoadSlice(dtype=np.float64)(path)
    assert out.dtype == torch.float64
    np.testing.assert_array_equal(out.numpy(), expected)


def test_multipage_tiff_frame_index(tmp_path: Path) -> None:
    """A page of a multi-page TIFF is chosen by frame_index."""
    pages = [Image.fromarray(PICTURE + 10 * k) for k in range(3)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    for k in range(3):
        np.testing.assert_array_equal(LoadSlice(frame_index=k)(tmp_path / "pages.tif")[0], PICTURE + 10 * k)


# ---- readers ----

READER_CASES = [
    # (file name, writer or None for an absent file, reader type)
    ("a.png", None, PILReader),
    ("a.JPG", None, PILReader),
    ("a.jpeg", None, PILReader),
    ("a.tif", None, PILReader),
    ("a.TIFF", None, PILReader),
    ("a.nii", None, NibabelReader),
    ("a.nii.gz", None, NibabelReader),
    ("a.dcm", None, PydicomReader),
    ("a.dicom", None, PydicomReader),
    ("IM000001", write_dicom, PydicomReader),
    ("1.2.840.113619.2.55.3.604", write_dicom, PydicomReader),
]


@pytest.mark.parametrize("name, writer, reader_type", READER_CASES)
def test_reader_for(tmp_path: Path, name: str, writer: Callable[..., Path] | None, reader_type: type) -> None:
    """Supported suffixes pick a reader without reading the file; other names need the DICOM magic bytes."""
    path = tmp_path / name
    if writer is not None:
        writer(path, PICTURE.astype(np.uint16))
    assert isinstance(reader_for(path), reader_type)
    assert is_dicom_file(path) == (writer is not None)


@pytest.mark.parametrize(
    "name, suffix, supported",
    [
        ("x.png", ".png", True),
        ("x.NII.GZ", ".nii.gz", True),
        ("x.tar.gz", ".gz", False),
        ("IM0001", "", False),
        ("1.2.840.604", ".604", False),
    ],
)
def test_file_suffix(name: str, suffix: str, supported: bool) -> None:
    """Lower-case suffix with .nii.gz as one."""
    assert file_suffix(name) == suffix
    assert (suffix in SUPPORTED_SUFFIXES) == supported


def test_is_dicom_file_never_raises(tmp_path: Path) -> None:
    """Missing, short, directory and non-DICOM paths are simply not DICOM."""
    (tmp_path / "short").write_bytes(b"DICM")
    (tmp_path / "zeros").write_bytes(bytes(200))
    for path in (tmp_path / "missing", tmp_path / "short", tmp_path / "zeros", tmp_path):
        assert not is_dicom_file(path)


# ---- errors ----


def _err_missing(tmp: Path) -> tuple[Path, dict[str, Any]]:
    return tmp / "missing_file.png", {}


def _err_missing_no_suffix(tmp: Path) -> tuple[Path, dict[str, Any]]:
    return tmp / "missing_file", {}


def _err_txt(tmp: Path) -> tuple[Path, dict[str, Any]]:
    (tmp / "notes.txt").write_text("not an image\n")
    return tmp / "notes.txt", {}


def _err_no_suffix_not_dicom(tmp: Path) -> tuple[Path, dict[str, Any]]:
    (tmp / "README").write_bytes(bytes(300))
    return tmp / "README", {}


def _err_truncated_png(tmp: Path) -> tuple[Path, dict[str, Any]]:
    path, _, _ = _png16(tmp)
    data = path.read_bytes()
    (tmp / "truncated.png").write_bytes(data[: len(data) // 2])
    return tmp / "truncated.png", {}


def _err_empty_png(tmp: Path) -> tuple[Path, dict[str, Any]]:
    (tmp / "empty.png").write_bytes(b"")
    return tmp / "empty.png", {}


def _err_garbage_tiff(tmp: Path) -> tuple[Path, dict[str, Any]]:
    (tmp / "garbage.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    return tmp / "garbage.tif", {}


def _err_dicom_no_pixels(tmp: Path) -> tuple[Path, dict[str, Any]]:
    return write_dicom(tmp / "report.dcm", PICTURE.astype(np.uint16), pixel_data=False), {}


def _err_dicom_garbage(tmp: Path) -> tuple[Path, dict[str, Any]]:
    (tmp / "garbage.dcm").write_bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    return tmp / "garbage.dcm", {}


def _err_dicom_truncated(tmp: Path) -> tuple[Path, dict[str, Any]]:
    data = write_dicom(tmp / "full.dcm", PICTURE.astype(np.uint16)).read_bytes()
    (tmp / "cut.dcm").write_bytes(data[: len(data) - 500])
    return tmp / "cut.dcm", {}


def _err_nifti_garbage(tmp: Path) -> tuple[Path, dict[str, Any]]:
    (tmp / "garbage.nii.gz").write_bytes(gzip.compress(b"not a nifti header" * 30))
    return tmp / "garbage.nii.gz", {}


def _err_volume_no_index(tmp: Path) -> tuple[Path, dict[str, Any]]:
    write_volume(tmp / "volume.nii.gz")
    return tmp / "volume.nii.gz", {}


def _err_volume_index_too_large(tmp: Path) -> tuple[Path, dict[str, Any]]:
    write_volume(tmp / "volume.nii.gz")
    return tmp / "volume.nii.gz", {"slice_index": DEPTH}


def _err_volume_index_negative(tmp: Path) -> tuple[Path, dict[str, Any]]:
    write_volume(tmp / "volume.nii.gz")
    return tmp / "volume.nii.gz", {"slice_index": -1}


def _err_multipage_no_frame(tmp: Path) -> tuple[Path, dict[str, Any]]:
    pages = [Image.fromarray(PICTURE)] * 2
    pages[0].save(tmp / "pages.tif", save_all=True, append_images=pages[1:])
    return tmp / "pages.tif", {}


def _err_frame_out_of_range(tmp: Path) -> tuple[Path, dict[str, Any]]:
    Image.fromarray(PICTURE).save(tmp / "single.png")
    return tmp / "single.png", {"frame_index": 1}


ERROR_CASES: list[tuple[str, Callable[[Path], tuple[Path, dict[str, Any]]], type[Exception], str]] = [
    # (id, writer -> (path, kwargs), exception type, fragment of the message besides the file name)
    ("missing", _err_missing, SliceFileNotFoundError, "not found"),
    ("missing_no_suffix", _err_missing_no_suffix, SliceFileNotFoundError, "not found"),
    ("unsupported_txt", _err_txt, SliceReadError, "unsupported"),
    ("no_suffix_not_dicom", _err_no_suffix_not_dicom, SliceReadError, "unsupported"),
    ("truncated_png", _err_truncated_png, SliceReadError, ""),
    ("empty_png", _err_empty_png, SliceReadError, ""),
    ("garbage_tiff", _err_garbage_tiff, SliceReadError, ""),
    ("dicom_without_pixeldata", _err_dicom_no_pixels, SliceReadError, "PixelData"),
    ("garbage_dcm", _err_dicom_garbage, SliceReadError, "DICOM"),
    ("truncated_dcm", _err_dicom_truncated, SliceReadError, "DICOM"),
    ("garbage_nifti", _err_nifti_garbage, SliceReadError, "NIfTI"),
    ("volume_without_slice_index", _err_volume_no_index, SliceReadError, "slice_index"),
    ("slice_index_too_large", _err_volume_index_too_large, SliceReadError, "out of range"),
    ("slice_index_negative", _err_volume_index_negative, SliceReadError, "out of range"),
    ("multipage_without_frame_index", _err_multipage_no_frame, SliceReadError, "frame_index"),
    ("frame_index_out_of_range", _err_frame_out_of_range, SliceReadError, "out of range"),
]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow, for the garbage TIFF
@pytest.mark.parametrize("writer, error, fragment", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_errors_name_the_file(
    tmp_path: Path, writer: Callable[[Path], tuple[Path, dict[str, Any]]], error: type[Exception], fragment: str
) -> None:
    """Every failure is a SliceReadError (a ValueError) whose message names the file."""
    path, kwargs = writer(tmp_path)
    with pytest.raises(error) as excinfo:
        LoadSlice()(path, **kwargs)
    assert isinstance(excinfo.value, SliceReadError)
    assert isinstance(excinfo.value, ValueError)
    assert path.name in str(excinfo.value)
    assert fragment in str(excinfo.value)


def test_missing_file_is_also_file_not_found(tmp_path: Path) -> None:
    """A missing file can be caught as FileNotFoundError, through LoadSlice and through reader_for."""
    with pytest.raises(FileNotFoundError, match=r"nothing\.png"):
        LoadSlice()(tmp_path / "nothing.png")
    with pytest.raises(FileNotFoundError, match="nothing"):
        reader_for(tmp_path / "nothing")


def test_palette_label_map_keeps_its_indices(tmp_path: Path) -> None:
    """A palette label map (colours per class, as VOC's) reads as its indices with ``palette="indices"``, and as its
    colours by default; an unknown reading is refused by name."""
    labels = np.zeros((H, W), np.uint8)
    labels[3:11, 4:16], labels[16:21, 30:37] = 1, 2
    picture = Image.frombytes("P", (W, H), labels.tobytes())
    picture.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
    picture.save(tmp_path / "labels.png")
    np.testing.assert_array_equal(LoadSlice(palette="indices")(tmp_path / "labels.png").numpy(), labels[None])
    colours = LoadSlice()(tmp_path / "labels.png").numpy()
    np.testing.assert_array_equal(colours[:, 3, 4], [128, 0, 0])
    np.testing.assert_array_equal(colours[:, 16, 30], [0, 128, 0])
    with pytest.raises(ValueError, match=r"palette must be one of 'colours', 'indices'.*'colors'"):
        LoadSlice(palette="colors")


# ---- LoadSliced ----


@pytest.mark.parametrize(
    "image_writer, label_writer",
    [(_tiff_hu, _tiff_mask_lzw), (_dicom_mono2, _png8), (_jpeg_rgb, _tiff_mask_lzw), (_nifti_2d_gz, _nifti_2d)],
    ids=["tiff", "dicom+png", "jpeg", "nifti"],
)
def test_loadsliced_matches_loadslice(tmp_path: Path, image_writer: Writer, label_writer: Writer) -> None:
    """LoadSliced loads each key like LoadSlice and leaves other keys alone."""
    (tmp_path / "i").mkdir()
    (tmp_path / "l").mkdir()
    image_path, _, _ = image_writer(tmp_path / "i")
    label_path, _, _ = label_writer(tmp_path / "l")
    item = {"image": image_path, "label": str(label_path), "case": "c0"}
    out = LoadSliced(keys=["image", "label"])(item)
    assert out["case"] == "c0"
    assert item["image"] == image_path  # input dict not modified
    for key, path in (("image", image_path), ("label", label_path)):
        expected = LoadSlice()(path)
        assert isinstance(out[key], MetaTensor)
        assert out[key].dtype == expected.dtype
        torch.testing.assert_close(out[key].as_tensor(), expected.as_tensor(), rtol=0, atol=0)
        assert out[key].meta["filename_or_obj"] == str(path)


@pytest.mark.parametrize("slice_index", [0, 2, DEPTH - 1])
def test_loadsliced_per_item_slice_index(tmp_path: Path, slice_index: int) -> None:
    """The item's slice_index picks the same slice of image and label volumes, in a custom-named key too."""
    image_slices = write_volume(tmp_path / "image.nii.gz")
    label_slices = write_volume(tmp_path / "label.nii.gz", affine=np.diag([-1.0, -1.0, -1.0, 1.0]))
    item = {"image": tmp_path / "image.nii.gz", "label": tmp_path / "label.nii.gz"}
    out = LoadSliced(keys=["image", "label"])({**item, "slice_index": slice_index})
    np.testing.assert_array_equal(out["image"][0], image_slices[slice_index])
    np.testing.assert_array_equal(out["label"][0], label_slices[DEPTH - 1 - slice_index])
    for key in ("image", "label"):
        torch.testing.assert_close(out[key].as_tensor(), LoadSlice(slice_index=slice_index)(item[key]).as_tensor())
    custom = LoadSliced(keys="image", slice_index_key="z")({**item, "z": slice_index})
    np.testing.assert_array_equal(custom["image"][0], image_slices[slice_index])


def test_loadsliced_missing_slice_index_and_keys(tmp_path: Path) -> None:
    """Without a slice_index a volume fails with its name; allow_missing_keys skips absent keys."""
    write_volume(tmp_path / "vol.nii.gz")
    with pytest.raises(SliceReadError, match=r"vol\.nii\.gz"):
        LoadSliced(keys="image")({"image": tmp_path / "vol.nii.gz"})
    path, expected, _ = _png8(tmp_path)
    out = LoadSliced(keys=["image", "label"], allow_missing_keys=True)({"image": path})
    assert set(out) == {"image"}
    np.testing.assert_array_equal(out["image"].numpy(), expected)


def test_loadsliced_palette_per_key(tmp_path: Path) -> None:
    """The bundles' ``palette=["colours", "indices"]``: a palette picture under "image" reads as its greys, a palette
    mask under "label" as its indices; one value serves every key, and an unknown one is refused at construction."""
    image_path, expected, _ = _png_palette_grey(tmp_path)
    mask_path = _indexed(MASK * 255, tmp_path / "mask_palette.png")  # background first: index 0, the block index 1
    out = LoadSliced(keys=["image", "label"], palette=["colours", "indices"])({"image": image_path, "label": mask_path})
    np.testing.assert_array_equal(out["image"].numpy(), expected)
    np.testing.assert_array_equal(out["label"].numpy(), _chw(MASK))
    both = LoadSliced(keys=["image", "label"])({"image": image_path, "label": mask_path})
    np.testing.assert_array_equal(both["label"].numpy(), _chw(MASK * 255))
    with pytest.raises(ValueError, match="palette must be one of"):
        LoadSliced(keys=["image", "label"], palette=["colours", "labels"])


def test_loadsliced_frame_index_key(tmp_path: Path) -> None:
    """The item's frame_index picks a page of a multi-page TIFF."""
    pages = [Image.fromarray(PICTURE + 10 * k) for k in range(3)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    out = LoadSliced(keys="image")({"image": tmp_path / "pages.tif", "frame_index": 2})
    np.testing.assert_array_equal(out["image"][0], PICTURE + 20)
