"""Loading 2D slices (PNG, JPEG, TIFF, DICOM, NIfTI) into channel-first MONAI MetaTensors, one orientation; and DICOM
series: finding, selecting and loading them as volumes."""

from __future__ import annotations

from pipeline.io.array import LoadSlice
from pipeline.io.dicom_series import (
    DicomSeries,
    DicomSeriesError,
    SeriesRules,
    SkippedFile,
    group_series,
    read_header,
    scan_dicom_folder,
    select_series,
    series_modalities,
)
from pipeline.io.dicom_slice import invert_monochrome1
from pipeline.io.dicom_volume import SeriesVolume, load_series_volume
from pipeline.io.dictionary import LoadSliced
from pipeline.io.nifti_slice import NiftiVolume, load_nifti_volume, nifti_depth
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
    "DicomSeries",
    "DicomSeriesError",
    "LoadSlice",
    "LoadSliced",
    "NiftiVolume",
    "SeriesRules",
    "SeriesVolume",
    "SkippedFile",
    "SliceFileNotFoundError",
    "SliceReadError",
    "file_suffix",
    "group_series",
    "invert_monochrome1",
    "is_dicom_file",
    "load_nifti_volume",
    "load_series_volume",
    "nifti_depth",
    "read_header",
    "reader_for",
    "scan_dicom_folder",
    "select_series",
    "series_modalities",
]
