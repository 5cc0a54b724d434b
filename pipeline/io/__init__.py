"""Loading 2D slices (PNG, JPEG, TIFF, DICOM, NIfTI) into channel-first MONAI MetaTensors, one orientation."""

from __future__ import annotations

from pipeline.io.array import LoadSlice
from pipeline.io.dicom import invert_monochrome1
from pipeline.io.dictionary import LoadSliced
from pipeline.io.readers import (
    DICOM_SUFFIXES,
    NIFTI_SUFFIXES,
    PIL_SUFFIXES,
    SUPPORTED_SUFFIXES,
    SliceFileNotFoundError,
    SliceReadError,
    file_suffix,
    is_dicom_file,
    reader_for,
)

__all__ = [
    "DICOM_SUFFIXES",
    "NIFTI_SUFFIXES",
    "PIL_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "LoadSlice",
    "LoadSliced",
    "SliceFileNotFoundError",
    "SliceReadError",
    "file_suffix",
    "invert_monochrome1",
    "is_dicom_file",
    "reader_for",
]
