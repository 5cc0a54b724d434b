"""Single-frame DICOM slices through MONAI's ``PydicomReader``: checked before decoding, decoded once.

What ``PydicomReader`` does not do, done here (reference.md section 4):

- clear errors, naming the file, for non-DICOM files, a missing PixelData element, a compressed transfer syntax
  whose decoder plugin is not installed (named by UID and name, with the packages that would decode it), multi-frame
  objects without a chosen frame, and absurd declared sizes;
- MONOCHROME1 is inverted so that bright means dense for every file (see ``invert_monochrome1``);
- RGB objects keep 3 channels (``PydicomReader`` counts the sample axis as spatial);
- PALETTE COLOR objects are expanded to RGB through their lookup table.

Patient attributes never reach the meta dict: the reader decodes a slim copy of the dataset holding only the pixel
and geometry elements, so MONAI's ``to_json_dict`` never sees names, IDs or dates (and skips converting the ~100
other elements, which made decoding about 4x slower).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from monai.data import PydicomReader
from monai.data.utils import affine_to_spacing
from monai.utils import MetaKeys
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, get_decoder

from pipeline.io.readers import SliceReadError, check_pixel_count, decoder_failed

__all__ = ["MAX_DICOM_VALUES", "check_decodable", "header_int", "invert_monochrome1", "load_dicom_slice"]

# Refuse objects declaring more than this many pixel values (rows x columns x samples x frames) before decoding:
# a corrupt header must give an error, not a multi-gigabyte allocation. 2**28 values = 1 GiB as float32.
MAX_DICOM_VALUES = 2**28

#: Elements that can hold an image's pixels.
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Everything pydicom needs to decode pixels and MONAI needs for the affine; nothing about the patient.
_SLIM_KEYWORDS = (
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "RescaleSlope",
    "RescaleIntercept",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
    *PIXEL_DATA_KEYWORDS,
)
_MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
# pydicom converts the YBR family to RGB while decoding (``as_rgb=True``).
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT"})
_PALETTE = "PALETTE COLOR"
# Transfer syntaxes added to the standard after pydicom 3.0's UID dictionary, named in messages all the same.
_NEWER_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG Recompression",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
    "1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression",
}


def invert_monochrome1(array: np.ndarray, ds: Dataset) -> np.ndarray:
    """Invert a MONOCHROME1 image (bright = low values) into MONOCHROME2 convention (bright = high values).

    The inversion mirrors each value inside the window of values the object can represent, not inside the values
    this image happens to contain: with stored values in ``[lo, hi]`` (``BitsStored`` bits, signed when
    ``PixelRepresentation`` is 1) and the rescale ``y = slope * x + intercept`` already applied,
    ``y' = (slope * lo + intercept) + (slope * hi + intercept) - y``, i.e. stored ``x' = lo + hi - x``. The same
    stored value therefore maps to the same output in every file of a series, whatever its content, and the result
    stays inside the representable window. Float pixel data has no stored-bits window; there the image's own
    minimum and maximum are used.

    Args:
        array: decoded (and rescaled) MONOCHROME1 pixels, any shape.
        ds: the dataset the pixels came from (reads BitsStored, PixelRepresentation, RescaleSlope/Intercept).

    Returns:
        the inverted array, float.
    """
    array = np.asarray(array, dtype=np.float64)
    if "PixelData" not in ds:
        return float(array.min()) + float(array.max()) - array
    bits = header_int(ds, "BitsStored", header_int(ds, "BitsAllocated", 16, "the file"), "the file")
    if header_int(ds, "PixelRepresentation", 0, "the file") == 1:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    else:
        lo, hi = 0, 2**bits - 1
    slope = float(ds.get("RescaleSlope") or 1.0)
    intercept = float(ds.get("RescaleIntercept") or 0.0)
    return slope * (lo + hi) + 2.0 * intercept - array


def header_int(ds: Dataset, keyword: str, default: int, name: str) -> int:
    """An integer attribute of a header (``Rows``, ``NumberOfFrames``, ...), ``default`` when absent or empty.

    Args:
        ds: the header.
        keyword: the attribute.
        default: its value when the header lacks it (or holds 0 or an empty string).
        name: how messages name the file.

    Raises:
        SliceReadError: naming the file and the attribute, when its value is not a whole number (``'1A'``).
    """
    value = ds.get(keyword)
    if not value:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SliceReadError(
            f"{name}: {keyword} is {str(value)!r}, not a whole number; the file's header is malformed"
        ) from None


def check_decodable(ds: Dataset, name: str) -> None:
    """Refuse a dataset whose pixel data pydicom cannot decode here, before anything is decoded.

    Args:
        ds: the dataset (its pixel data may be deferred or not yet read).
        name: how messages name the file, e.g. its path or, where paths may carry patient identifiers, its file name.

    Raises:
        SliceReadError: no PixelData element, no TransferSyntaxUID, a transfer syntax pydicom has no decoder for, or a
            compressed one whose decoder plugin is not installed (the message names the transfer syntax by UID and name
            and the packages that would decode it).
    """
    if not any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
        raise SliceReadError(
            f"{name}: DICOM object has no PixelData (not an image, e.g. a report or presentation state)"
        )
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsyntax is None:
        raise SliceReadError(f"{name}: DICOM file meta has no TransferSyntaxUID; cannot tell how pixels are encoded")
    ts_name = _NEWER_TRANSFER_SYNTAXES.get(str(tsyntax), tsyntax.name)
    ts_label = f"{tsyntax} ({ts_name})" if ts_name != str(tsyntax) else str(tsyntax)
    try:
        decoder = get_decoder(tsyntax)
    except (NotImplementedError, ValueError) as e:
        raise SliceReadError(f"{name}: transfer syntax {ts_label} is not supported by pydicom") from e
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
        raise SliceReadError(
            f"{name}: pixel data is compressed with transfer syntax {ts_label} and no decoder for it is installed "
            f"(install one of: {missing})"
        )


def _check_header(
    path: str | os.PathLike, ds: Dataset, frame_index: int | None, max_pixels: int | None = None
) -> tuple[int, str]:
    """Refuse what cannot be decoded into one 2D slice, before any pixel is decoded.

    Returns:
        ``(number_of_frames, photometric_interpretation)``.
    """
    check_decodable(ds, str(path))
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in _MONOCHROME | _COLOUR | {_PALETTE}:
        raise SliceReadError(f"{path}: unsupported PhotometricInterpretation {photometric!r}")
    n_frames = header_int(ds, "NumberOfFrames", 1, str(path))
    if n_frames > 1 and frame_index is None:
        raise SliceReadError(
            f"{path}: multi-frame DICOM with {n_frames} frames; a 2D slice loader takes one frame: pass frame_index "
            f"(0..{n_frames - 1})"
        )
    if frame_index is not None and not 0 <= frame_index < n_frames:
        raise SliceReadError(f"{path}: frame_index {frame_index} out of range 0..{n_frames - 1}")
    rows, columns = header_int(ds, "Rows", 0, str(path)), header_int(ds, "Columns", 0, str(path))
    check_pixel_count(path, rows, columns, max_pixels)
    n_values = rows * columns * header_int(ds, "SamplesPerPixel", 1, str(path)) * n_frames
    if n_values > MAX_DICOM_VALUES:
        raise SliceReadError(
            f"{path}: header declares {n_values} pixel values (Rows x Columns x SamplesPerPixel x frames), more "
            f"than MAX_DICOM_VALUES={MAX_DICOM_VALUES}; refusing to decode"
        )
    return n_frames, photometric


def _slim_copy(ds: Dataset) -> Dataset:
    """A dataset sharing ``ds``'s pixel and geometry elements (no copies of the values) and nothing else."""
    slim = Dataset()
    slim.file_meta = ds.file_meta
    slim.set_original_encoding(ds.is_implicit_VR, ds.is_little_endian, ds.original_character_set)
    for keyword in _SLIM_KEYWORDS:
        if keyword in ds:
            slim[keyword] = ds[keyword]
    return slim


def load_dicom_slice(
    path: str | os.PathLike, reader: PydicomReader, frame_index: int | None = None, max_pixels: int | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode one DICOM frame with ``reader``: rescaled, MONOCHROME1 inverted, in stored (row, column) order.

    Args:
        path: DICOM Part 10 file.
        reader: ``PydicomReader(swap_ij=False, prune_metadata=True)``.
        frame_index: frame of a multi-frame object; required when it has more than one. All frames are decoded
            (once) and one is kept.

    Returns:
        ``(array, meta)``: array (H, W) grayscale or (H, W, 3) colour, H = Rows; meta from ``PydicomReader``
        (geometry tags, ``affine``/``original_affine`` in RAS mapping (row, column, 0) to patient mm, ``spacing``)
        with ``spatial_shape`` (H, W) and ``original_channel_dim`` NaN or -1.

    Raises:
        SliceReadError: see the module docstring.
    """
    try:
        ds = reader.read(path)
    except InvalidDicomError as e:
        raise SliceReadError(f"{path}: not a DICOM file (no 128-byte preamble + 'DICM' file meta header)") from e
    except Exception as e:  # truncated headers give EOFError, OSError, struct.error, ValueError...
        raise SliceReadError(f"{path}: cannot parse DICOM header ({type(e).__name__}: {e})") from e
    n_frames, photometric = _check_header(path, ds, frame_index, max_pixels)
    try:
        array, meta = reader.get_data(_slim_copy(ds))
    except BaseException as e:  # truncated or corrupt pixel data; a Rust decoder panics
        if not decoder_failed(e):
            raise
        raise SliceReadError(f"{path}: cannot decode DICOM pixel data ({type(e).__name__}: {e})") from e
    if n_frames > 1:
        array = array[frame_index]
    if photometric == "MONOCHROME1":
        array = invert_monochrome1(array, ds)
    elif photometric == _PALETTE:
        array = apply_color_lut(np.asarray(array).astype(np.int64), ds)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise SliceReadError(f"{path}: decoded pixel array has unexpected shape {array.shape}")
    meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(array.shape[:2])
    meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = float("nan") if array.ndim == 2 else -1
    meta["spacing"] = affine_to_spacing(meta[MetaKeys.ORIGINAL_AFFINE], r=2)
    return array, meta
