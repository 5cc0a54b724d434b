"""DICOM series discovery: read each header once, group files into series, pick the series to process by rule.

What MONAI's ``PydicomReader`` does not do with a folder (reference.md section 4), done here:

- files are grouped by SeriesInstanceUID, image orientation and size, so two series in one folder are never
  interleaved into one volume and one UID holding stacks of different geometry is split (with a warning);
- non-DICOM files, unreadable or truncated files, objects without pixel data (reports, presentation states,
  DICOMDIR) and files without a SeriesInstanceUID are skipped, each with a logged reason;
- a series is chosen by explicit rules (modality, ImageType not LOCALIZER/SECONDARY, description, slice count,
  the largest of its study), and the log says why each series was or was not chosen.

Patient identifiers never reach a message: files are named by their file name only (``path.name``) and series by
:attr:`DicomSeries.label`, a hash of the SeriesInstanceUID. Folder names are never shown, since PACS exports name
folders after the patient.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import string
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from pipeline.bundle import flag
from pipeline.io.dicom_slice import PIXEL_DATA_KEYWORDS, header_int
from pipeline.io.readers import SliceReadError, is_dicom_file

__all__ = [
    "HEADER_DEFER_SIZE",
    "DicomSeries",
    "DicomSeriesError",
    "SeriesRules",
    "SkippedFile",
    "group_series",
    "iter_files",
    "read_header",
    "safe_error_text",
    "scan_dicom_folder",
    "select_series",
    "series_modalities",
]

logger = logging.getLogger(__name__)

#: Element values larger than this (bytes) are not read with the header, only located: the pixel data, and vendor
#: blobs such as Siemens CSA headers. Accessing such an element later reads it from the file.
HEADER_DEFER_SIZE = 1024
# Direction cosines are rounded to this many decimals (about 0.06 degrees) to group slices by orientation.
_ORIENTATION_DECIMALS = 3


class DicomSeriesError(SliceReadError):
    """A DICOM file or series cannot be used; the message names the file (by file name) and the problem.

    Messages name files by file name and series by :attr:`DicomSeries.label`, never by folder: export folders carry
    patient names and IDs.
    """


@dataclass
class DicomSeries:
    """One image stack: the files of one SeriesInstanceUID sharing one orientation and one image size.

    Attributes:
        study_uid: StudyInstanceUID ("" when absent).
        series_uid: SeriesInstanceUID.
        series_number: SeriesNumber, or None when absent or not an integer.
        modality: Modality, e.g. "CT" ("" when absent).
        description: SeriesDescription ("" when absent).
        image_type: ImageType values, e.g. ``("ORIGINAL", "PRIMARY", "AXIAL")``.
        rows: Rows of every file.
        columns: Columns of every file.
        orientation: ImageOrientationPatient rounded to 3 decimals (the grouping key), None when absent.
        files: the files, in the order they were found (not slice order: see ``load_series_volume``).
        part: "" normally; "a", "b", ... when one SeriesInstanceUID held stacks of different orientation or size.
    """

    study_uid: str
    series_uid: str
    series_number: int | None
    modality: str
    description: str
    image_type: tuple[str, ...]
    rows: int
    columns: int
    orientation: tuple[float, ...] | None
    files: list[Path] = field(default_factory=list)
    part: str = ""

    @property
    def num_slices(self) -> int:
        """Number of files (one slice each for the single-frame objects this package loads)."""
        return len(self.files)

    @property
    def label(self) -> str:
        """De-identified, folder-safe name, e.g. ``"CT_s002_1a2b3c4d"``: modality, series number, UID hash, part."""
        modality = re.sub(r"[^A-Za-z0-9]", "", self.modality) or "OT"
        number = "sNA" if self.series_number is None else f"s{self.series_number:03d}"
        suffix = f"_{self.part}" if self.part else ""
        return f"{modality}_{number}_{_short_hash(self.series_uid)}{suffix}"

    @property
    def study_label(self) -> str:
        """De-identified study name, e.g. ``"study_5e6f7a8b"`` (hash of the StudyInstanceUID)."""
        return f"study_{_short_hash(self.study_uid)}"

    def summary(self) -> str:
        """One line for logs: modality, slice count, ImageType and description (no patient attributes)."""
        slices = f"{self.num_slices} slice" + ("" if self.num_slices == 1 else "s")
        image_type = "\\".join(self.image_type) or "no ImageType"
        return f"{self.modality or 'no modality'}, {slices}, {image_type}, {self.description!r}"


@dataclass
class SkippedFile:
    """A file left out of every series.

    Attributes:
        path: the file, as given.
        reason: why, naming the file by its file name only, e.g. ``"README.txt: not DICOM (...)"``.
    """

    path: Path
    reason: str


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def safe_error_text(error: BaseException, path: Path) -> str:
    """``"ExceptionType: message"`` with the file's folders removed from the message (pydicom's name full paths).

    Args:
        error: the exception.
        path: the file the exception is about.

    Returns:
        the text, naming the file by its file name only.
    """
    text = str(error)
    candidates = {str(path), str(path.absolute())}
    candidates |= {str(p) for p in (path.parent, path.absolute().parent) if str(p) not in (".", os.sep)}
    for full in sorted(candidates, key=len, reverse=True):  # the file before its folder
        text = text.replace(full, path.name if full.endswith(path.name) else "<folder>")
    return f"{type(error).__name__}: {text}"


class _TruncationCheck(io.BufferedReader):
    """A binary file whose reads remember when the file ended before the bytes asked for.

    pydicom stops silently at the end of a truncated file and returns the elements read so far; this tells such a
    file from a complete one. A short read of a whole 8-byte element header is the normal end of the data set.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(os.fspath(path), "rb"))  # a str name: pydicom reopens it for deferred values
        self.short_read = False

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if size is not None and size > 0 and len(data) < size and (len(data) > 0 or size != 8):
            self.short_read = True
        return data


def read_header(path: str | os.PathLike, *, defer_size: int | None = HEADER_DEFER_SIZE) -> Dataset:
    """Read a DICOM file's header; values larger than ``defer_size`` (the pixel data) are located, not read.

    Whether PixelData is present is known (``"PixelData" in ds``) without loading it; ``ds.PixelData`` or
    ``ds.pixel_array`` reads it from the file when needed.

    Args:
        path: DICOM Part 10 file.
        defer_size: bytes above which an element's value is read only on access; None reads everything.

    Returns:
        the dataset, with ``ds.filename`` set to ``path``.

    Raises:
        DicomSeriesError: the file is missing, not DICOM (no preamble + "DICM"), its header cannot be parsed, or it
            ends before the data it declares (a truncated copy). The message names the file by file name.
    """
    path = Path(path)
    if not is_dicom_file(path):
        problem = "not a DICOM file (no 128-byte preamble + 'DICM')" if path.is_file() else "file not found"
        raise DicomSeriesError(f"{path.name}: {problem}")
    try:
        with _TruncationCheck(path) as fp:
            ds = pydicom.dcmread(fp, defer_size=defer_size)
            truncated = fp.short_read or fp.tell() > os.fstat(fp.fileno()).st_size  # a deferred value past the end
    except Exception as e:  # truncated or corrupt headers give OSError, EOFError, struct.error, ValueError...
        raise DicomSeriesError(f"{path.name}: cannot parse DICOM header ({safe_error_text(e, path)})") from e
    if truncated:
        raise DicomSeriesError(f"{path.name}: truncated or corrupt DICOM file (it ends before the data it declares)")
    return ds


def _orientation(ds: Dataset) -> tuple[float, ...] | None:
    """ImageOrientationPatient rounded for grouping, or None when absent or not six numbers."""
    try:
        values = [float(v) for v in ds.get("ImageOrientationPatient") or ()]
    except (TypeError, ValueError):
        return None
    if len(values) != 6:
        return None
    return tuple(round(v, _ORIENTATION_DECIMALS) + 0.0 for v in values)  # + 0.0 turns -0.0 into 0.0


def _series_number(ds: Dataset) -> int | None:
    try:
        value = ds.get("SeriesNumber")
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _new_series(ds: Dataset, key: tuple[str, tuple[float, ...] | None, int, int]) -> DicomSeries:
    series_uid, orientation, rows, columns = key
    return DicomSeries(
        study_uid=str(ds.get("StudyInstanceUID") or ""),
        series_uid=series_uid,
        series_number=_series_number(ds),
        modality=str(ds.get("Modality") or "").strip(),
        description=str(ds.get("SeriesDescription") or "").strip(),
        image_type=tuple(str(v).strip() for v in (ds.get("ImageType") or ())),
        rows=rows,
        columns=columns,
        orientation=orientation,
    )


def _skip(skipped: list[SkippedFile], path: Path, reason: str) -> None:
    logger.warning("Skipping %s", reason)
    skipped.append(SkippedFile(path, reason))


def _sort_key(series: DicomSeries) -> tuple:
    return (series.study_uid, series.series_number is None, series.series_number or 0, series.series_uid, series.part)


def _name_parts(parts: list[DicomSeries]) -> None:
    """Give the stacks of one SeriesInstanceUID parts "a", "b", ... (most files first) and log the split."""
    parts.sort(key=lambda s: (-s.num_slices, s.rows, s.columns, str(s.orientation)))
    letters = string.ascii_lowercase
    for i, part in enumerate(parts):
        part.part = letters[i] if i < len(letters) else f"p{i}"
    base = parts[0].label.rsplit("_", 1)[0]
    details = "; ".join(
        f"{s.label}: {s.num_slices} files, {s.rows}x{s.columns}, orientation {s.orientation}" for s in parts
    )
    logger.warning(
        "Series %s: one SeriesInstanceUID holds %d stacks of different orientation or image size; split into %s",
        base,
        len(parts),
        details,
    )


def group_series(paths: Iterable[str | os.PathLike]) -> tuple[list[DicomSeries], list[SkippedFile]]:
    """Group DICOM files into series by (SeriesInstanceUID, rounded ImageOrientationPatient, Rows, Columns).

    Each header is read once here, pixel data deferred (``load_series_volume`` reads the files again, with pixels).
    A SeriesInstanceUID whose files differ in orientation or size becomes several series with parts "a", "b", ... in
    their labels, and a warning is logged.

    Args:
        paths: candidate files.

    Returns:
        ``(series, skipped)``: series sorted by (StudyInstanceUID, SeriesNumber, SeriesInstanceUID, part), each
        keeping its files in the order given; skipped files (not DICOM, unreadable, truncated, no PixelData, no
        SeriesInstanceUID) in the order given, each also logged at WARNING.
    """
    found: list[DicomSeries] = []  # one single-file series per usable file, in the order given
    skipped: list[SkippedFile] = []
    for path in map(Path, paths):
        try:
            ds = read_header(path)
        except DicomSeriesError as e:
            _skip(skipped, path, str(e))
            continue
        if not any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
            reason = "no PixelData (not an image, e.g. a report, presentation state or DICOMDIR; or a truncated copy)"
            _skip(skipped, path, f"{path.name}: {reason}")
            continue
        series_uid = str(ds.get("SeriesInstanceUID") or "").strip()
        if not series_uid:
            _skip(skipped, path, f"{path.name}: no SeriesInstanceUID; cannot tell which series it belongs to")
            continue
        try:
            key = (
                series_uid,
                _orientation(ds),
                header_int(ds, "Rows", 0, path.name),
                header_int(ds, "Columns", 0, path.name),
            )
        except SliceReadError as e:
            _skip(skipped, path, str(e))
            continue
        found.append(_new_series(ds, key))
        found[-1].files.append(path)
    # A slice without ImageOrientationPatient stays with the one stack of its UID and size (loading then refuses it
    # by name) rather than forming a stack of its own.
    orientations: dict[tuple[str, int, int], set[tuple[float, ...]]] = defaultdict(set)
    for s in found:
        if s.orientation is not None:
            orientations[(s.series_uid, s.rows, s.columns)].add(s.orientation)
    groups: dict[tuple[str, tuple[float, ...] | None, int, int], DicomSeries] = {}
    for s in found:
        known = orientations[(s.series_uid, s.rows, s.columns)]
        orientation = next(iter(known)) if s.orientation is None and len(known) == 1 else s.orientation
        key = (s.series_uid, orientation, s.rows, s.columns)
        if key not in groups:
            groups[key] = replace(s, orientation=orientation, files=[])
        groups[key].files += s.files
    by_uid: dict[str, list[DicomSeries]] = defaultdict(list)
    for series in groups.values():
        by_uid[series.series_uid].append(series)
    for parts in by_uid.values():
        if len(parts) > 1:
            _name_parts(parts)
    return sorted(groups.values(), key=_sort_key), skipped


def scan_dicom_folder(root: str | os.PathLike) -> tuple[list[DicomSeries], list[SkippedFile]]:
    """Find the DICOM image series under ``root`` (recursively, in sorted order) and the files left out.

    Args:
        root: folder, e.g. a PACS export with one folder per study and series.

    Returns:
        ``(series, skipped)`` as for :func:`group_series`; files that are not DICOM (``README.txt``, ``LICENSE``)
        are skipped with reason "not DICOM". Hidden files and folders (``.DS_Store``, markers) are ignored. No
        series at all is logged at WARNING, not raised: the caller decides.

    Raises:
        NotADirectoryError: ``root`` is not an existing folder (the message does not repeat the path).
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(
            "DICOM folder to scan does not exist or is not a folder (path not shown: may hold PHI)"
        )
    candidates: list[Path] = []
    skipped: list[SkippedFile] = []
    for path in iter_files(root):
        if is_dicom_file(path):
            candidates.append(path)
        else:
            _skip(skipped, path, f"{path.name}: not DICOM (no 128-byte preamble + 'DICM')")
    series, unusable = group_series(candidates)
    skipped += unusable
    n_files = len(candidates) + len(skipped) - len(unusable)
    if series:
        logger.info("Found %d DICOM series in %d files (%d skipped)", len(series), n_files, len(skipped))
    else:
        logger.warning("No DICOM image series found: %d files looked at, %d skipped", n_files, len(skipped))
    return series, skipped


def iter_files(root: str | os.PathLike, exclude: Sequence[str | os.PathLike] = ()) -> Iterator[Path]:
    """Every file under ``root``, recursively, in sorted order; hidden files and folders are left out.

    A folder that cannot be listed is skipped with a logged warning that does not show its path.

    Args:
        root: the folder to walk.
        exclude: folders not to enter (an output folder inside the input, say), compared after resolving links.
    """
    skip = {Path(p).resolve() for p in exclude}
    for dirpath, dirnames, filenames in os.walk(root, onerror=_log_walk_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and Path(dirpath, d).resolve() not in skip)
        for name in sorted(f for f in filenames if not f.startswith(".")):
            yield Path(dirpath, name)


def _log_walk_error(error: OSError) -> None:
    logger.warning("Skipping a folder that cannot be listed (%s)", type(error).__name__)


@dataclass
class SeriesRules:
    """Which series to process.

    Attributes:
        modalities: accepted Modality values (case-insensitive), None for any. Defaults to ``("CT",)``.
        exclude_image_types: a series whose ImageType contains any of these values is left out (scout images,
            reformats and screen captures). Defaults to ``("LOCALIZER", "SECONDARY")``.
        description_pattern: regular expression searched (case-insensitively) in SeriesDescription, e.g.
            ``"B40f|soft"``; None accepts any. Defaults to None.
        min_slices: fewest files a series needs. Defaults to 1.
        largest_only: keep only the series with the most slices in each study (ties: the lowest SeriesNumber),
            among those passing the other rules. Defaults to False. A bool, or the ``--largest_series_only`` setting
            as typed (:func:`pipeline.bundle.flag`).

    Raises:
        ValueError: ``min_slices`` below 1 or a ``description_pattern`` that is not a valid regular expression.
    """

    modalities: tuple[str, ...] | None = ("CT",)
    exclude_image_types: tuple[str, ...] = ("LOCALIZER", "SECONDARY")
    description_pattern: str | None = None
    min_slices: int = 1
    largest_only: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "largest_only", flag(self.largest_only, "largest_series_only"))
        if self.min_slices < 1:
            raise ValueError(f"min_slices must be at least 1, got {self.min_slices}")
        if self.description_pattern is not None:
            try:
                re.compile(self.description_pattern)
            except re.error as e:
                raise ValueError(f"description_pattern {self.description_pattern!r} is not a valid regex: {e}") from e

    def listing_rejection(self, modality: str | None, description: str | None) -> str | None:
        """Why a series fails the rules that a PACS's series listing can answer (Modality and SeriesDescription,
        from QIDO-RS), or None when it passes them (a value ``None``, which the listing did not give, passes);
        :mod:`pipeline.pacs` retrieves no series these reject."""
        wanted = {m.upper() for m in self.modalities} if self.modalities is not None else None
        if wanted is not None and modality is not None and modality.upper() not in wanted:
            return f"modality {modality or '(none)'} is not one of {', '.join(self.modalities or ())}"
        pattern = self.description_pattern
        if pattern is not None and description is not None and not re.search(pattern, description, re.IGNORECASE):
            return f"SeriesDescription does not match {pattern!r}"
        return None

    def rejection(self, series: DicomSeries) -> str | None:
        """Why ``series`` fails the per-series rules (all but ``largest_only``), or None when it passes."""
        listed = self.listing_rejection(series.modality, series.description)
        if listed is not None:
            return listed
        image_type = {value.upper() for value in series.image_type}
        excluded = [value for value in self.exclude_image_types if value.upper() in image_type]
        if excluded:
            return f"ImageType contains {excluded[0]}"
        if series.num_slices < self.min_slices:
            return f"{series.num_slices} slices, fewer than min_slices={self.min_slices}"
        return None


def select_series(
    series: Sequence[DicomSeries], rules: SeriesRules | None = None
) -> tuple[list[DicomSeries], list[tuple[DicomSeries, str]]]:
    """Choose the series to process by ``rules``, logging one INFO line per series with the decision and why.

    Args:
        series: candidates, e.g. from :func:`scan_dicom_folder`.
        rules: selection rules. Defaults to ``SeriesRules()`` (CT, not LOCALIZER or SECONDARY).

    Returns:
        ``(chosen, rejected)``: chosen series and ``(series, reason)`` pairs, each in the order given.
    """
    rules = SeriesRules() if rules is None else rules
    reasons = {id(s): rules.rejection(s) for s in series}
    if rules.largest_only:
        by_study: dict[str, list[DicomSeries]] = defaultdict(list)
        for s in series:
            if reasons[id(s)] is None:
                by_study[s.study_uid].append(s)
        for candidates in by_study.values():
            best = min(candidates, key=lambda s: (-s.num_slices, *_sort_key(s)[1:]))
            for s in candidates:
                if s is not best:
                    reasons[id(s)] = (
                        f"not the largest series of its study ({s.num_slices} slices; {best.label} has "
                        f"{best.num_slices})"
                    )
    chosen, rejected = [], []
    for s in series:
        reason = reasons[id(s)]
        if reason is None:
            logger.info("%s: selected (%s)", s.label, s.summary())
            chosen.append(s)
        else:
            logger.info("%s: not selected: %s (%s)", s.label, reason, s.summary())
            rejected.append((s, reason))
    if series and not chosen:
        logger.warning("None of the %d series matched the selection rules %s", len(series), rules)
    return chosen, rejected


def series_modalities(modality: str) -> list[str]:
    """The DICOM Modality values a model of ``modality`` accepts: ``XR`` (the bundles' name for radiographs) stands
    for computed and digital radiography (``CR``, ``DX``); any other modality for itself."""
    return ["CR", "DX"] if modality == "XR" else [modality]
