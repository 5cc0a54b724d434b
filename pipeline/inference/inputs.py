"""What to run inference on: one 2D image, a folder of images, a DICOM study folder, or a folder of studies.

``find_inputs`` walks the path once and sorts every file into 2D images (PNG, JPEG, TIFF, NIfTI by suffix),
DICOM series (grouped and selected by :mod:`pipeline.io.dicom_series`) and skipped files, each skip with its
reason. A single DICOM file given directly is a 2D image (an X-ray, one CT slice); DICOM files inside a folder form
series. Projection radiographs (CR, DX, ...) have no slice geometry; a selected series of such a modality is run as
2D images, one per file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.io.dicom_series import DicomSeries, SeriesRules, SkippedFile, group_series, iter_files, select_series
from pipeline.io.nifti_slice import nifti_depth
from pipeline.io.readers import DICOM_SUFFIXES, NIFTI_SUFFIXES, PIL_SUFFIXES, file_suffix, is_dicom_file

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
        name: output stem, unique within a run, without folder names (they may carry patient identifiers): the file
            name without suffix, prefixed by a hash of its folder when it lies in a subfolder of the input, with
            ``_2``, ``_3``... appended when two files would share a name (``a.png``, ``a.jpg``); and
            ``<series label>_<index>`` for projection DICOM images.
    """

    path: Path
    name: str


@dataclass
class InferenceInputs:
    """Everything ``find_inputs`` found under one path.

    Attributes:
        images: 2D images, sorted by path.
        series: selected DICOM series, in study and series order.
        volumes: 3D NIfTI volumes (segmented slice by slice, written as one label volume each), sorted by path.
        rejected: DICOM series the selection rules left out, with the reason.
        skipped: files that are neither images nor readable DICOM image objects, with the reason.
    """

    images: list[ImageInput] = field(default_factory=list)
    series: list[DicomSeries] = field(default_factory=list)
    volumes: list[ImageInput] = field(default_factory=list)
    rejected: list[tuple[DicomSeries, str]] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images) + len(self.series) + len(self.volumes)

    def shard(self, rank: int, count: int) -> InferenceInputs:
        """Process ``rank``'s share when ``count`` processes split the inputs: every ``count``-th series and image,
        from the ``rank``-th. The series left out and the files skipped stay with the whole (they are reported once).
        """
        if not 0 <= rank < count:
            raise ValueError(f"shard {rank} of {count}: rank must be in 0..{count - 1}")
        return InferenceInputs(
            images=self.images[rank::count], series=self.series[rank::count], volumes=self.volumes[rank::count]
        )


def _is_volume(path: Path) -> bool:
    """Whether a NIfTI file holds more than one slice (an unreadable one is left to the reader to report)."""
    try:
        return nifti_depth(path) > 1
    except ValueError:
        return False


def _stem(name: str) -> str:
    suffix = file_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def _image_name(path: Path, root: Path, used: set[str]) -> str:
    """A unique output stem for ``path`` that shows its file name but none of its folder names."""
    relative = path.relative_to(root)
    stem = _stem(relative.name)
    if relative.parent != Path("."):
        stem = f"{hashlib.sha1(relative.parent.as_posix().encode()).hexdigest()[:8]}_{stem}"
    name, count = stem, 1
    while name in used:
        count += 1
        name = f"{stem}_{count}"
    used.add(name)
    return name


def find_inputs(
    path: str | os.PathLike, rules: SeriesRules | None = None, exclude: Sequence[str | os.PathLike] = ()
) -> InferenceInputs:
    """Find the 2D images and DICOM series under ``path`` and select the series to segment.

    Args:
        path: a file (2D image or single DICOM file) or a folder, searched recursively (hidden entries ignored).
        rules: DICOM series selection rules; default ``SeriesRules()``.
        exclude: folders under ``path`` not to search: the run's own output folder, so that a second run does not
            segment the first one's masks and overlays.

    Returns:
        The images, selected and rejected series, and skipped files. Selection and skips are logged.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a file of a format the pipeline does not read.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError("the inference input does not exist (path not repeated: it may hold patient data)")
    if path.is_file():
        suffix = file_suffix(path)
        if suffix in NIFTI_SUFFIXES and _is_volume(path):
            return InferenceInputs(volumes=[ImageInput(path, _stem(path.name))])
        if suffix in _IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES or is_dicom_file(path):
            return InferenceInputs(images=[ImageInput(path, _stem(path.name))])
        raise ValueError(f"{path.name}: not an image this pipeline reads (suffix {suffix or 'none'!r}, not DICOM)")

    inputs = InferenceInputs()
    dicom_files = []
    used: set[str] = set()
    for file in iter_files(path, exclude):
        suffix = file_suffix(file)
        if suffix in NIFTI_SUFFIXES and _is_volume(file):
            inputs.volumes.append(ImageInput(file, _image_name(file, path, used)))
        elif suffix in _IMAGE_SUFFIXES:
            inputs.images.append(ImageInput(file, _image_name(file, path, used)))
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
