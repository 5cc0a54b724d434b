"""Which MONAI reader loads which file, and the error every slice reader raises.

MONAI's ``LoadImage`` picks a reader by trying each registered one; without ITK it sends ``.tif`` to the DICOM
reader and fails. Here the reader is named per suffix instead, and files whose suffix says nothing (DICOM files are
often stored without one, or named by their UID, e.g. ``1.2.840.113619.2.55.3.604``) are recognised by the DICOM
magic bytes.

The readers are configured for this package's one orientation (numpy display order, see ``pipeline.io.array``):
``PILReader(reverse_indexing=False)`` and ``PydicomReader(swap_ij=False)`` keep the stored pixel array as it is, and
``NibabelReader`` leaves reorientation to ``pipeline.io.nifti_slice``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from monai.data import ImageReader, NibabelReader, PILReader, PydicomReader

__all__ = [
    "DICOM_SUFFIXES",
    "MAX_SLICE_PIXELS",
    "NIFTI_SUFFIXES",
    "PIL_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "SliceFileNotFoundError",
    "SliceReadError",
    "check_pixel_count",
    "decoder_failed",
    "file_suffix",
    "is_dicom_file",
    "missing_file_reason",
    "reader_for",
]

PIL_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
# Files with any other suffix (or none) are still loaded when they carry the DICOM magic bytes.
SUPPORTED_SUFFIXES: tuple[str, ...] = PIL_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES

_DICOM_PREAMBLE_LENGTH = 128
_DICOM_MAGIC = b"DICM"


class SliceReadError(ValueError):
    """A file could not be loaded as one 2D slice; the message names the file and the problem.

    Messages never contain DICOM patient attributes (names, IDs, dates): only the path, which the caller chose.
    """


class SliceFileNotFoundError(SliceReadError, FileNotFoundError):
    """The file does not exist. Caught by ``except SliceReadError`` and by ``except FileNotFoundError``."""


def decoder_failed(error: BaseException) -> bool:
    """Whether ``error`` from a pixel decoder is the decoder's failure rather than a request to stop.

    Decoder plugins written in Rust (pyo3, e.g. pydicom's RLE plugin) report corrupt data by panicking with
    ``PanicException``, a ``BaseException``: ``except Exception`` lets it end the process. Catch ``BaseException``
    around decoding and re-raise when this returns False.
    """
    return not isinstance(error, (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError))


MAX_SLICE_PIXELS = 50_000_000
"""Default limit on one slice's height x width (about 7,000 x 7,000): the largest radiographs (about 4,300 x 3,500)
fit easily, and a 10,000 x 10,000 image that would take gigabytes to decode is refused from its header."""


def missing_file_reason(path: str | os.PathLike) -> str:
    """Why ``path`` is not a readable file, in words: a folder, a symbolic link loop, a link to nothing, or not
    found."""
    if os.path.isdir(path):
        return "is a folder, not an image file"
    if os.path.islink(path):
        try:
            os.stat(path)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return "is a symbolic link loop (it leads back to itself)"
            if e.errno == errno.ENOENT:  # the target's name only: its folders may name a patient
                return f"is a symbolic link to nothing ({os.path.basename(os.readlink(path))} does not exist)"
            return f"is a symbolic link whose target cannot be reached ({e.strerror})"
    if os.path.exists(path):
        return "is not a regular file (a device, a pipe or a socket)"
    return "file not found"


def check_pixel_count(path: str | os.PathLike, height: int, width: int, max_pixels: int | None) -> None:
    """Refuse a slice whose header declares more than ``max_pixels`` pixels, before anything is decoded.

    Args:
        path: the file, for the message.
        height: rows, from the header.
        width: columns, from the header.
        max_pixels: the limit; ``None`` or 0 for none.

    Raises:
        SliceReadError: naming the file, its size, the limit and how to raise it.
    """
    if max_pixels and height * width > max_pixels:
        raise SliceReadError(
            f"{path}: {height}x{width} pixels, more than the limit of {max_pixels:,}; refusing to decode it. "
            "Downsample the image, or raise the limit (--max_image_pixels)."
        )


def file_suffix(path: str | os.PathLike) -> str:
    """Lower-case suffix of ``path``, treating ``.nii.gz`` as one suffix.

    Args:
        path: file path.

    Returns:
        e.g. ``".png"``, ``".nii.gz"``, or ``""`` when the name has no suffix.
    """
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a DICOM Part 10 file: a 128-byte preamble followed by ``b"DICM"``.

    Reads 132 bytes; never raises for missing, unreadable or short files (returns ``False``).

    Args:
        path: file path.

    Returns:
        ``True`` when the magic bytes are present.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_DICOM_PREAMBLE_LENGTH + len(_DICOM_MAGIC))
    except OSError:
        return False
    return head[_DICOM_PREAMBLE_LENGTH:] == _DICOM_MAGIC


def reader_for(path: str | os.PathLike) -> ImageReader:
    """The MONAI reader that loads ``path``, chosen by suffix (DICOM magic bytes for any other suffix).

    A new reader instance is returned on each call: MONAI readers keep per-call state (``filenames``) between
    ``read`` and ``get_data``, so sharing one across threads (``CacheDataset`` fills its cache with a thread pool)
    is not safe. Construction costs microseconds.

    Args:
        path: file path. Only read (132 bytes) when its suffix is not one of ``SUPPORTED_SUFFIXES``.

    Returns:
        ``PILReader(reverse_indexing=False)`` for PNG/JPEG/TIFF, ``PydicomReader(swap_ij=False, prune_metadata=True)``
        for DICOM, ``NibabelReader()`` for NIfTI.

    Raises:
        SliceFileNotFoundError: the suffix is not a supported one and the file does not exist.
        SliceReadError: the suffix is not supported and the file is not DICOM.
    """
    suffix = file_suffix(path)
    if suffix in PIL_SUFFIXES:
        return PILReader(reverse_indexing=False)
    if suffix in NIFTI_SUFFIXES:
        return NibabelReader(as_closest_canonical=False)
    if suffix in DICOM_SUFFIXES or is_dicom_file(path):
        # prune_metadata keeps only geometry tags (no patient attributes) in the meta dict.
        return PydicomReader(swap_ij=False, prune_metadata=True, affine_lps_to_ras=True)
    if not os.path.isfile(path):
        raise SliceFileNotFoundError(f"{path}: {missing_file_reason(path)}")
    shown = f"suffix {suffix!r}" if suffix else "no suffix"
    raise SliceReadError(
        f"{path}: unsupported file type ({shown}, and not a DICOM file); supported suffixes: "
        f"{', '.join(SUPPORTED_SUFFIXES)}, or any DICOM file (128-byte preamble + 'DICM')"
    )
