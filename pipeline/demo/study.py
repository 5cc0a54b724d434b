"""Embedded demo DICOM study: a synthetic chest CT written as real CT Image Storage series, like a PACS export.

``write_ct_series`` writes any (N, H, W) volume in Hounsfield units as one CT series (stored uint16 with
RescaleIntercept -1024, like the reference Siemens study); the tests build their edge cases with it.
``write_demo_study`` writes one synthetic chest (the phantom of the 2D demo slices, :mod:`pipeline.demo.phantom`)
scanned twice (a sharp B70f and a smooth B40f reconstruction of the same anatomy, sharing one frame of reference)
plus a scout image (ImageType LOCALIZER), in the folder layout of a TCIA/PACS export, so that series grouping and
selection have real work to do. The objects pass ``dciodvfy`` without errors and are accepted by highdicom as
segmentation sources. The study's marker records the phantom's true volume of each structure (right lung, left lung,
heart) in each series (:func:`demo_study_truth`), so that a model's ``report.json`` can be checked against it.

The patient is synthetic ("Demo^Synthetic", ID "DEMO0001"); the images are not suitable for any clinical purpose.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_encoder
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from skimage import transform

from pipeline.atomic import GeneratedFolder
from pipeline.demo.phantom import LABELS, ChestAnatomy, scan

__all__ = [
    "DEMO_PATIENT_ID",
    "DEMO_PATIENT_NAME",
    "demo_study_truth",
    "ensure_demo_study",
    "is_complete_demo_study",
    "synthesize_ct_volume",
    "write_ct_series",
    "write_demo_study",
]

logger = logging.getLogger(__name__)

DEMO_PATIENT_NAME = "Demo^Synthetic"
DEMO_PATIENT_ID = "DEMO0001"
#: Written last into a finished study folder; records the generation parameters and the files.
MARKER_NAME = ".demo_study.json"
#: Bumped whenever the generator's output changes, so that studies made by an older version are regenerated.
GENERATOR_VERSION = 3
# The generator name in the marker predates the package layout: folders written before it stay recognised.
_FOLDER = GeneratedFolder(MARKER_NAME, "pipeline.data.demo_dicom", GENERATOR_VERSION, "demo study")

_INTERCEPT = -1024.0  # stored = HU + 1024, as in the reference study
_BITS_STORED = 12  # stored 0..4095: HU -1024..3071
_FIELD_OF_VIEW_MM = 350.0
_SLICE_THICKNESS_MM = 8.0
_KERNEL_SHARPNESS = {"B70f": 1.0, "B40f": 0.0}  # pipeline.demo.phantom.scan's sharpness of each series' kernel
_AXIAL_SERIES = ((2, "B70f"), (3, "B40f"))  # series number and kernel of each axial series


def _uid(*parts: object) -> UID:
    """A deterministic UID under pydicom's root, derived from ``parts``."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _default_positions(
    num_slices: int, shape: tuple[int, int], orientation: np.ndarray, pixel_spacing: Sequence[float], step: float
) -> np.ndarray:
    """(N, 3) positions of a stack centred on the in-plane origin, slice k at ``k * step`` along the normal."""
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    rows, columns = shape
    corner = -(columns - 1) / 2 * pixel_spacing[1] * row_dir - (rows - 1) / 2 * pixel_spacing[0] * col_dir
    return corner + np.arange(num_slices)[:, None] * step * normal


def _check_series_args(
    volume_hu: np.ndarray,
    positions: np.ndarray,
    instance_numbers: Sequence[int],
    file_names: Sequence[str],
    transfer_syntax: UID,
) -> None:
    n = volume_hu.shape[0]
    if positions.shape != (n, 3):
        raise ValueError(f"positions must have shape ({n}, 3), got {positions.shape}")
    if len(instance_numbers) != n:
        raise ValueError(f"instance_numbers must have {n} entries, got {len(instance_numbers)}")
    if len(file_names) != n or len(set(file_names)) != n:
        raise ValueError(f"file_names must be {n} distinct names, got {list(file_names)}")
    if transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        return
    try:
        available = get_encoder(transfer_syntax).is_available
    except (NotImplementedError, ValueError):  # no encoder, or a syntax pydicom does not know
        available = False
    if not available:
        raise ValueError(
            f"cannot write transfer syntax {transfer_syntax} ({transfer_syntax.name}): supported are Explicit and "
            f"Implicit VR Little Endian and compressed syntaxes with an installed pydicom encoder"
        )


def _ct_dataset(
    *,
    study_uid: str,
    series_uid: str,
    series_number: int,
    description: str,
    frame_of_reference_uid: str,
    image_type: Sequence[str],
    modality: str,
    convolution_kernel: str | None,
) -> Dataset:
    """The attributes shared by every slice of a series: patient, study, series, equipment, frame of reference."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(image_type)
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "pipeline (synthetic demo data)"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Thorax demo (synthetic)"
    ds.SeriesDescription = description
    ds.PatientName = DEMO_PATIENT_NAME
    ds.PatientID = DEMO_PATIENT_ID
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.KVP = "120"
    ds.PatientPosition = "HFS"
    if convolution_kernel:
        ds.ConvolutionKernel = convolution_kernel
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = _BITS_STORED
    ds.HighBit = _BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = _INTERCEPT
    ds.RescaleSlope = 1
    if "LOCALIZER" not in image_type:  # a scout's values are not HU (dciodvfy warns otherwise)
        ds.RescaleType = "HU"
    ds.LossyImageCompression = "00"
    return ds


def write_ct_series(
    folder: str | os.PathLike,
    volume_hu: np.ndarray,
    *,
    study_uid: str,
    series_uid: str,
    series_number: int,
    description: str,
    positions: np.ndarray | None = None,
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    pixel_spacing: Sequence[float] = (0.7, 0.7),
    slice_thickness: float = 5.0,
    instance_numbers: Sequence[int] | None = None,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    modality: str = "CT",
    file_names: Sequence[str] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    frame_of_reference_uid: str | None = None,
    convolution_kernel: str | None = None,
) -> list[Path]:
    """Write an (N, H, W) volume in HU as one series of single-frame CT Image Storage files.

    Pixels are stored as 12-bit unsigned values ``round(HU) + 1024`` (RescaleIntercept -1024, RescaleSlope 1), so
    HU outside [-1024, 3071] are clipped. UIDs of the instances are derived from ``series_uid`` and the slice index,
    so the same arguments give the same files.

    Args:
        folder: output folder (created).
        volume_hu: (N, H, W) Hounsfield units; slice k is written to ``file_names[k]`` at ``positions[k]``.
        study_uid: StudyInstanceUID.
        series_uid: SeriesInstanceUID.
        series_number: SeriesNumber.
        description: SeriesDescription.
        positions: (N, 3) ImagePositionPatient in mm. Defaults to a stack centred in-plane on the origin, slice k at
            ``k * slice_thickness`` along the slice normal.
        orientation: ImageOrientationPatient (row direction, column direction). Defaults to axial.
        pixel_spacing: PixelSpacing (row spacing, column spacing) in mm. Defaults to (0.7, 0.7).
        slice_thickness: SliceThickness in mm. Defaults to 5.0.
        instance_numbers: InstanceNumber per slice. Defaults to 1..N.
        image_type: ImageType. Defaults to ORIGINAL\\PRIMARY\\AXIAL.
        modality: Modality. Defaults to "CT".
        file_names: file name per slice. Defaults to ``1-01.dcm``, ``1-02.dcm``, ... as in TCIA exports.
        transfer_syntax: Explicit or Implicit VR Little Endian, or a compressed syntax pydicom can encode (RLE
            Lossless, JPEG 2000 Lossless, JPEG-LS Lossless). Defaults to Explicit VR Little Endian.
        frame_of_reference_uid: FrameOfReferenceUID. Defaults to one derived from ``study_uid``, so series of one
            study share it.
        convolution_kernel: ConvolutionKernel, e.g. "B70f"; omitted when None.

    Returns:
        the written files, in slice order of ``volume_hu``.

    Raises:
        ValueError: for a volume that is not 3D, argument lengths that do not match N, or a transfer syntax that
            cannot be written.
    """
    volume_hu = np.asarray(volume_hu)
    if volume_hu.ndim != 3:
        raise ValueError(f"volume_hu must be (N, H, W), got shape {volume_hu.shape}")
    n, rows, columns = volume_hu.shape
    iop = np.asarray(orientation, dtype=np.float64)
    positions = (
        _default_positions(n, (rows, columns), iop, pixel_spacing, slice_thickness)
        if positions is None
        else np.asarray(positions, dtype=np.float64)
    )
    instance_numbers = list(range(1, n + 1)) if instance_numbers is None else list(instance_numbers)
    file_names = [f"1-{k + 1:02d}.dcm" for k in range(n)] if file_names is None else list(file_names)
    transfer_syntax = UID(transfer_syntax)
    _check_series_args(volume_hu, positions, instance_numbers, file_names, transfer_syntax)
    stored = np.clip(np.rint(volume_hu.astype(np.float64) - _INTERCEPT), 0, 2**_BITS_STORED - 1).astype(np.uint16)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    common = _ct_dataset(
        study_uid=study_uid,
        series_uid=series_uid,
        series_number=series_number,
        description=description,
        frame_of_reference_uid=frame_of_reference_uid or _uid(study_uid, "frame of reference"),
        image_type=image_type,
        modality=modality,
        convolution_kernel=convolution_kernel,
    )
    normal = np.cross(iop[:3], iop[3:])
    paths = []
    for k in range(n):
        ds = Dataset()
        ds.update(common)
        ds.SOPInstanceUID = _uid(series_uid, k)
        ds.InstanceNumber = instance_numbers[k]
        ds.ImagePositionPatient = [round(float(x), 6) for x in positions[k]]
        ds.ImageOrientationPatient = [round(float(x), 8) for x in iop]
        ds.SliceThickness = slice_thickness
        ds.SliceLocation = round(float(positions[k] @ normal), 6)
        ds.PixelSpacing = [float(x) for x in pixel_spacing]
        ds.Rows, ds.Columns = rows, columns
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        compressed = transfer_syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if compressed else transfer_syntax
        ds.PixelData = stored[k].tobytes()
        if compressed:
            ds.compress(transfer_syntax, stored[k], generate_instance_uid=False)
        path = folder / file_names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def synthesize_ct_volume(size: int = 256, num_slices: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free synthetic chest CT volume in HU and its label map: one phantom patient cut at consecutive levels.

    The same generator as the 2D demo slices (:class:`~pipeline.demo.phantom.ChestAnatomy`). Slice 0 lies above the
    lung apices and slice N-1 below the lung bases (head first, as a scanner writes instance 1); the levels run
    evenly from -0.2 to 1.2 (0: apex, 1: base). Patient supine: anterior at the top, patient's right on the image
    left (DICOM axial orientation).

    Args:
        size: height and width in pixels (at least 64). Defaults to 256.
        num_slices: N (at least 2). Defaults to 24.
        seed: random seed of the patient and of each slice's vessels, ribs and texture. Defaults to 0.

    Returns:
        ``(hu, labels)``: float32 (N, size, size) HU and the uint8 (N, size, size) label map of the right lung (1),
        the left lung (2) and the heart (3) (:data:`~pipeline.demo.phantom.LABELS`).

    Raises:
        ValueError: ``size < 64`` or ``num_slices < 2``.
    """
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    if num_slices < 2:
        raise ValueError(f"num_slices must be at least 2, got {num_slices}")
    anatomy = ChestAnatomy.draw(np.random.default_rng([seed, 3]))
    hu = np.empty((num_slices, size, size), dtype=np.float32)
    labels = np.empty((num_slices, size, size), dtype=np.uint8)
    for k in range(num_slices):
        level = -0.2 + 1.4 * (k + 0.5) / num_slices
        hu[k], labels[k] = anatomy.section(level, size, np.random.default_rng([seed, 3, k]))
    return hu, labels


def _reconstruct(hu: np.ndarray, kernel: str, rng: np.random.Generator) -> np.ndarray:
    """The same anatomy as a sharp (B70f: edge enhanced, noisy) or smooth (B40f: blurred, quiet) reconstruction."""
    sharpness = _KERNEL_SHARPNESS[kernel]
    return np.stack([scan(section, rng, sharpness=sharpness) for section in hu])


def _localizer(hu: np.ndarray, size: int) -> np.ndarray:
    """A frontal scout image: attenuation summed front to back, rows running head to feet, as stored HU values."""
    attenuation = np.clip(hu + 1000.0, 0.0, None).sum(axis=1)  # (N, W)
    scout = transform.resize(attenuation, (size, size), order=1, preserve_range=True)
    return scout / scout.max() * 2500.0 - 1024.0


def _study_files(size: int, num_slices: int) -> dict[str, list[str]]:
    """Relative folder -> file names of the demo study, laid out like a TCIA export (note the double spaces)."""
    study = f"{DEMO_PATIENT_ID}/01-01-2000-NA-Thorax Demo-00001"
    return {
        f"{study}/1.000000-Topogram  0.6  T20f-00001": ["1-1.dcm"],
        f"{study}/2.000000-Thorax  8.0  B70f-00002": [f"1-{k + 1:02d}.dcm" for k in range(num_slices)],
        f"{study}/3.000000-Thorax  8.0  B40f-00003": [f"1-{k + 1:02d}.dcm" for k in range(num_slices)],
    }


def _truth(labels: np.ndarray, voxel_ml: float) -> dict[str, dict[str, float]]:
    """Each structure's voxels and volume in mL in a label map, by name in the order of ``LABELS``."""
    truth = {}
    for value, name in LABELS.items():
        if value:
            voxels = int(np.count_nonzero(labels == value))
            truth[name] = {"voxels": voxels, "volume_ml": voxels * voxel_ml}
    return truth


def _write_study_files(root: Path, size: int, num_slices: int, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Write the study into ``root``; return the phantom's true volumes by series description and structure."""
    hu, labels = synthesize_ct_volume(size, num_slices, seed)
    study_uid = _uid("pipeline demo study", size, num_slices, seed)
    spacing = _FIELD_OF_VIEW_MM / size
    top = num_slices * _SLICE_THICKNESS_MM / 2
    corner = -(size - 1) / 2 * spacing
    # Instance 1 is the most superior slice, as scanners write them; positions descend along +z (LPS: superior).
    positions = [(corner, corner, top - k * _SLICE_THICKNESS_MM) for k in range(num_slices)]
    folders = list(_study_files(size, num_slices))
    rng = np.random.default_rng([seed, 4])
    truth = {}
    for number, kernel in _AXIAL_SERIES:
        description = f"Thorax 8.0 {kernel}"
        # Both series reconstruct one anatomy on one grid: the same truth, recorded for each as a report gives it.
        truth[description] = _truth(labels, spacing * spacing * _SLICE_THICKNESS_MM / 1000.0)
        write_ct_series(
            root / folders[number - 1],
            _reconstruct(hu, kernel, rng),
            study_uid=study_uid,
            series_uid=_uid(study_uid, "series", number),
            series_number=number,
            description=description,
            positions=np.asarray(positions),
            pixel_spacing=(spacing, spacing),
            slice_thickness=_SLICE_THICKNESS_MM,
            convolution_kernel=kernel,
        )
    scout_height = num_slices * _SLICE_THICKNESS_MM
    write_ct_series(
        root / folders[0],
        _localizer(hu, size)[None],
        study_uid=study_uid,
        series_uid=_uid(study_uid, "series", 1),
        series_number=1,
        description="Topogram 0.6 T20f",
        positions=np.array([[corner, 0.0, top]]),
        orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0),  # coronal: rows run from head to feet
        pixel_spacing=(scout_height / size, spacing),
        slice_thickness=0.6,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        file_names=["1-1.dcm"],
        convolution_kernel="T20f",
    )
    return truth


def is_complete_demo_study(root: str | os.PathLike, **params: object) -> bool:
    """Whether ``root`` holds a finished demo study from this generator version, made with ``params`` if given.

    Args:
        root: study root folder.
        params: generation parameters (``size``, ``num_slices``, ``seed``) that must match.

    Returns:
        True when the marker exists, matches the version and ``params``, and every file it lists exists.
    """
    root = Path(root)
    recorded = _FOLDER.matching_marker(root, params)
    if recorded is None:
        return False
    files = recorded.get("files")
    return isinstance(files, list) and bool(files) and all((root / name).is_file() for name in files)


def write_demo_study(root: str | os.PathLike, *, size: int = 256, num_slices: int = 24, seed: int = 0) -> Path:
    """Write the synthetic two-series chest CT study (plus a scout image) into ``root``, like a PACS export.

    Layout (folder names with double spaces, as in TCIA exports)::

        root/DEMO0001/01-01-2000-NA-Thorax Demo-00001/
            1.000000-Topogram  0.6  T20f-00001/1-1.dcm         ImageType ORIGINAL\\PRIMARY\\LOCALIZER
            2.000000-Thorax  8.0  B70f-00002/1-01.dcm ...       sharp kernel, N axial slices
            3.000000-Thorax  8.0  B40f-00003/1-01.dcm ...       smooth kernel, same anatomy and positions
        root/.demo_study.json                                   parameters, file list and true volumes (the
                                                                completion marker)

    Axial slices are ``350 / size`` mm pixels, 8 mm apart, instance 1 the most superior. The marker's ``"truth"``
    gives, for each axial series by SeriesDescription, each structure's voxels and volume in mL in the phantom's label
    map (:func:`synthesize_ct_volume`; :func:`demo_study_truth` reads it). The study is written into a temporary
    sibling folder renamed to ``root`` at the end; an existing ``root`` is replaced only when it is empty or a demo
    study written here.

    Args:
        root: output folder.
        size: rows and columns of the axial slices (at least 64). Defaults to 256.
        num_slices: axial slices per series (at least 2). Defaults to 24.
        seed: random seed; the same seed gives identical files. Defaults to 0.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``size < 64`` or ``num_slices < 2``.
        FileExistsError: ``root`` exists and is neither empty nor a demo study.
    """
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    if num_slices < 2:
        raise ValueError(f"num_slices must be at least 2, got {num_slices}")
    root = Path(root)
    params = {"size": size, "num_slices": num_slices, "seed": seed}
    with _FOLDER.build(root, params, lambda r: is_complete_demo_study(r, **params)) as (tmp, marker):
        truth = _write_study_files(tmp, size, num_slices, seed)
        marker["files"] = [f"{folder}/{n}" for folder, names in _study_files(size, num_slices).items() for n in names]
        marker["truth"] = truth
    return root


def demo_study_truth(root: str | os.PathLike) -> dict[str, dict[str, dict[str, float]]]:
    """The phantom's true volume of each structure in each series of a demo study, as its marker records it.

    The truth is the phantom's label map (:func:`synthesize_ct_volume`) counted voxel by voxel: what a perfect model
    of the right lung, the left lung and the heart would report in ``report.json``. Both axial series show the same
    anatomy on the same grid, so their truths are equal.

    Args:
        root: a demo study written by :func:`write_demo_study`.

    Returns:
        ``{series description: {structure name: {"voxels": int, "volume_ml": float}}}``, e.g.
        ``truth["Thorax 8.0 B70f"]["heart"]["volume_ml"]``.

    Raises:
        ValueError: when ``root`` holds no complete demo study of this generator version.
    """
    root = Path(root)
    truth = (_FOLDER.read_marker(root) or {}).get("truth") if is_complete_demo_study(root) else None
    if not isinstance(truth, dict):
        raise ValueError(f"{root} holds no complete demo study of generator version {GENERATOR_VERSION}")
    return truth


def ensure_demo_study(root: str | os.PathLike, **kwargs: object) -> Path:
    """Return ``root`` after writing the demo study there unless a complete one with the same parameters exists.

    Args:
        root: study root folder, e.g. ``datasets/demo_dicom``.
        kwargs: forwarded to :func:`write_demo_study` (``size``, ``num_slices``, ``seed``); its defaults fill in the
            rest when comparing with the recorded parameters.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: for a keyword :func:`write_demo_study` does not take.
        FileExistsError: ``root`` exists and is neither empty nor a demo study.
    """
    return _FOLDER.ensure(root, write_demo_study, is_complete_demo_study, kwargs)
