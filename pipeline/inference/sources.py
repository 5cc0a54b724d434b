"""What to run inference on: one 2D image, a folder of images, a DICOM study folder, or a folder of studies.

``find_inputs`` walks the path once and sorts every file into 2D images (PNG, JPEG, TIFF, NIfTI by suffix),
DICOM series (grouped and selected by ``pipeline.io.series``) and skipped files, each skip with its reason. A single
DICOM file given directly is a 2D image (an X-ray, one CT slice); DICOM files inside a folder form series.
Projection radiographs (CR, DX, ...) have no slice geometry; a selected series of such a modality is run as 2D
images, one per file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.io.readers import DICOM_SUFFIXES, NIFTI_SUFFIXES, PIL_SUFFIXES, file_suffix, is_dicom_file
from pipeline.io.series import DicomSeries, SeriesRules, SkippedFile, group_series, select_series

__all__ = ["PROJECTION_MODALITIES", "ImageInput", "InferenceInputs", "find_inputs"]

logger = logging.getLogger("pipeline.inference")

#: DICOM modalities whose images are single projections without a slice position: run as 2D images.
PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "RF", "XA", "IO", "PX", "ES", "XC", "OP", "SM"})
_IMAGE_SUFFIXES = PIL_SUFFIXES + NIFTI_SUFFIXES


@dataclass(frozen=True)
class ImageInput:
    """A 2D image to segment.

    Attributes:
        path: the file.
        name: output stem, unique within a run: the path relative to the input folder without suffix for ordinary
            images; ``<series label>_<index>`` for DICOM images found in a folder (their folder names may carry
            patient identifiers).
    """

    path: Path
    name: str


@dataclass
class InferenceInputs:
    """Everything ``find_inputs`` found under one path.

    Attributes:
        images: 2D images, sorted by path.
        series: selected DICOM series, in study and series order.
        rejected: DICOM series the selection rules left out, with the reason.
        skipped: files that are neither images nor readable DICOM image objects, with the reason.
    """

    images: list[ImageInput] = field(default_factory=list)
    series: list[DicomSeries] = field(default_factory=list)
    rejected: list[tuple[DicomSeries, str]] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images) + len(self.series)


def _stem(relative: Path) -> str:
    name = relative.as_posix()
    suffix = file_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def _walk(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder, f) for f in sorted(files) if not f.startswith("."))
    return found


def find_inputs(path: str | os.PathLike, rules: SeriesRules | None = None) -> InferenceInputs:
    """Find the 2D images and DICOM series under ``path`` and select the series to segment.

    Args:
        path: a file (2D image or single DICOM file) or a folder, searched recursively (hidden entries ignored).
        rules: DICOM series selection rules; default ``SeriesRules()``.

    Returns:
        The images, selected and rejected series, and skipped files. Selection and skips are logged.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a file of a format the pipeline does not read.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"inference input {path} does not exist")
    if path.is_file():
        suffix = file_suffix(path)
        if suffix in _IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES or is_dicom_file(path):
            return InferenceInputs(images=[ImageInput(path, _stem(Path(path.name)))])
        raise ValueError(f"{path.name}: not an image this pipeline reads (suffix {suffix or 'none'!r}, not DICOM)")

    inputs = InferenceInputs()
    dicom_files = []
    for file in _walk(path):
        suffix = file_suffix(file)
        if suffix in _IMAGE_SUFFIXES:
            inputs.images.append(ImageInput(file, _stem(file.relative_to(path))))
        elif suffix in DICOM_SUFFIXES or is_dicom_file(file):
            dicom_files.append(file)
        else:
            reason = f"{file.name}: skipped, neither an image ({', '.join(_IMAGE_SUFFIXES)}) nor a DICOM file"
            logger.warning(reason)
            inputs.skipped.append(SkippedFile(file, reason))
    if dicom_files:
        series, skipped = group_series(dicom_files)
        inputs.skipped.extend(skipped)
        chosen, inputs.rejected = select_series(series, rules or SeriesRules())
        for s in chosen:
            if s.modality in PROJECTION_MODALITIES:
                logger.info("%s: %s projection images, run as 2D images", s.label, s.modality)
                inputs.images.extend(ImageInput(f, f"{s.label}_{i:04d}") for i, f in enumerate(sorted(s.files)))
            else:
                inputs.series.append(s)
    if not len(inputs):
        logger.warning("no image or selectable DICOM series found under the input folder")
    return inputs
