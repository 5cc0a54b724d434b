"""A dataset's modality and channels follow from its datalist or its images (pipeline.intake.image_kind)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from pipeline.intake import SAMPLE_SIZE, dataset_in_channels, dataset_modality, is_colour

# tests/intake/<this file> -> parents[2] is the repository, parents[3] the folder holding it and ``shared``.
KVASIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "kvasir_seg"
SIZE = 32


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def _grey(seed: int, dtype: type = np.uint8) -> np.ndarray:
    high = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, high, (SIZE, SIZE), dtype=dtype)


def _grey_as_rgb(seed: int) -> np.ndarray:
    return np.repeat(_grey(seed)[..., None], 3, axis=-1)


def _grey_with_marker(seed: int) -> np.ndarray:
    """Grey stored as RGB with a red marker on 8 of 1,024 pixels (under 1 %)."""
    image = _grey_as_rgb(seed)
    image[0, :8] = (255, 0, 0)
    return image


def _rgb_indexed(seed: int) -> Image.Image:
    """A colour image saved with a palette of 64 colours (as a PNG optimiser writes it)."""
    return Image.fromarray(_rgb(seed)).quantize(64)


def _hounsfield(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 1500, (SIZE, SIZE), dtype=np.int16)


def _write_image(path: Path, array: np.ndarray | Image.Image) -> None:
    if isinstance(array, Image.Image):
        array.save(path)
    elif path.suffix in (".nii", ".gz"):
        nib.save(nib.Nifti1Image(array.astype(np.float32), np.eye(4)), path)
    else:
        Image.fromarray(array).save(path)


def _write_dicom(path: Path, array: np.ndarray, modality: str) -> None:
    """A single-frame unsigned 16-bit DICOM image whose Modality is ``modality``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Rows, ds.Columns = array.shape
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(array, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def _dataset(
    root: Path,
    make: Callable[[int], np.ndarray | Image.Image],
    suffix: str,
    count: int = 3,
    datalist: dict | None = None,
) -> Path:
    """``root`` with ``images/<k><suffix>`` made by ``make(k)``, ``masks/<k>.png`` and optionally a ``dataset.json``
    (``datalist``'s keys with a training list of every pair)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(count):
        name = f"{k:03d}"
        _write_image(root / "images" / f"{name}{suffix}", make(k))
        Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(root / "masks" / f"{name}.png")
    if datalist is not None:
        training = [{"image": f"images/{k:03d}{suffix}", "label": f"masks/{k:03d}.png"} for k in range(count)]
        (root / "dataset.json").write_text(json.dumps({**datalist, "training": training}))
    return root


@pytest.mark.parametrize(
    "make, suffix, datalist, modality, channels",
    [
        (_rgb, ".jpg", None, "OT", 3),
        (_rgb, ".png", None, "OT", 3),
        (_rgb_indexed, ".png", None, "OT", 3),  # its colours, not its palette indices
        (_grey, ".png", None, "OT", 1),
        (lambda k: _grey(k, np.uint16), ".png", None, "OT", 1),
        (_hounsfield, ".tif", None, "CT", 1),  # the Kaggle lung CT files: int16 HU
        (_hounsfield, ".nii.gz", None, "CT", 1),  # a float volume of whole HU, read at its middle slice
        (_grey_as_rgb, ".png", None, "OT", 1),
        (_grey_with_marker, ".png", None, "OT", 1),  # a burnt-in marker does not make it colour
        (_grey, ".png", {"modality": "ES"}, "ES", 1),
        (_grey, ".png", {"modality": {"0": "MR"}}, "MR", 1),
        (_rgb, ".png", {"modality": {"0": "es"}}, "ES", 3),
        (_hounsfield, ".tif", {"modality": "MR"}, "MR", 1),  # the datalist wins over the values
        (_grey, ".png", {"bundle_overrides": {"modality": "ES", "in_channels": 3}}, "ES", 3),
        (_grey, ".png", {"modality": "CT", "bundle_overrides": {"modality": "XR"}}, "XR", 1),
        (_rgb, ".png", {"bundle_overrides": {"in_channels": 1}}, "OT", 1),
    ],
)
def test_resolved_from_datalist_or_images(tmp_path, make, suffix, datalist, modality, channels):
    data = _dataset(tmp_path / "data", make, suffix, datalist=datalist)
    assert dataset_modality(data) == modality
    assert dataset_in_channels(data) == channels
    if datalist is not None:  # the datalist given as a file, as --dataset_dir takes it
        assert (dataset_modality(data / "dataset.json"), dataset_in_channels(data / "dataset.json")) == (
            modality,
            channels,
        )


@pytest.mark.parametrize("tag, modality", [("MR", "MR"), ("DX", "DX"), ("IO", "OT")])
def test_dicom_modality_tag_decides(tmp_path, tag, modality):
    """Unsigned 16-bit values would give OT; the tag says what they are (IO, intra-oral, is not a code the bundles
    scale by, so percentiles: OT)."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for k in range(2):
        _write_dicom(data / "images" / f"{k}.dcm", _grey(k, np.uint16), tag)
        Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(data / "masks" / f"{k}.png")
    assert dataset_modality(data) == modality and dataset_in_channels(data) == 1


def test_the_choice_and_its_reason_are_logged(tmp_path, caplog):
    data = _dataset(tmp_path / "rgb", _rgb, ".jpg")
    listed = _dataset(tmp_path / "listed", _rgb, ".png", datalist={"modality": {"0": "ES"}})
    with caplog.at_level("INFO", logger="pipeline.intake.image_kind"):
        dataset_modality(data), dataset_in_channels(data), dataset_modality(listed)
    assert "modality OT: 8-bit RGB images, not Hounsfield units" in caplog.text
    assert "in_channels 3: colour images (000.jpg and others)" in caplog.text
    assert "modality ES: from dataset.json" in caplog.text


@pytest.mark.parametrize(
    "datalist, problem",
    [
        ({"modality": "XYZ"}, "modality 'XYZ' is not one of the accepted codes (CT, MR"),
        ({"modality": {"0": "MR", "1": "CT"}}, "must name one DICOM modality code"),
        ({"modality": {"0": 3}}, "must name one DICOM modality code"),
        ({"bundle_overrides": {"modality": "MRI"}}, "modality 'MRI' is not one of the accepted codes"),
    ],
)
def test_a_bad_modality_in_the_datalist_names_it(tmp_path, datalist, problem):
    data = _dataset(tmp_path / "data", _grey, ".png", datalist=datalist)
    with pytest.raises(ValueError, match=r"dataset\.json: ") as raised:
        dataset_modality(data)
    assert problem in str(raised.value) and "pass --modality" in str(raised.value)


@pytest.mark.parametrize("value", [2, "3", True])
def test_a_bad_in_channels_in_the_datalist_names_it(tmp_path, value):
    data = _dataset(tmp_path / "data", _grey, ".png", datalist={"bundle_overrides": {"in_channels": value}})
    with pytest.raises(ValueError, match=rf"dataset\.json: bundle_overrides in_channels must be 1 .* got {value!r}"):
        dataset_in_channels(data)


def test_several_dicom_modalities_are_refused(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for name, tag in (("a", "CT"), ("b", "MR")):
        _write_dicom(data / "images" / f"{name}.dcm", _grey(0, np.uint16), tag)
        Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(data / "masks" / f"{name}.png")
    with pytest.raises(ValueError, match=r"several DICOM modalities \(a\.dcm is CT, b\.dcm is MR\); pass --modality"):
        dataset_modality(data)


@pytest.mark.parametrize("exists", [False, True])
def test_the_demo_folder_is_ct_of_one_channel_without_reading(tmp_path, exists):
    """Before its first run the demo folder does not exist; after it, nothing in it is read (colour images here)."""
    demo = tmp_path / "demo"
    if exists:
        _dataset(demo, _rgb, ".png")
    assert dataset_modality(demo, demo_dir=demo) == "CT"
    assert dataset_in_channels(str(demo), demo_dir=str(demo)) == 1
    if exists:  # the same folder as a dataset of its own is read
        assert (dataset_modality(demo), dataset_in_channels(demo)) == ("OT", 3)


@pytest.mark.parametrize("grey_first, channels", [(SAMPLE_SIZE, 1), (SAMPLE_SIZE - 1, 3)])
def test_only_the_first_images_are_read(tmp_path, grey_first, channels):
    """Grey images, then colour ones: only the first SAMPLE_SIZE (by name) decide; later ones are never opened, so
    unreadable files after them do not matter."""
    data = _dataset(tmp_path / "data", lambda k: _grey(k) if k < grey_first else _rgb(k), ".png", SAMPLE_SIZE + 2)
    for k in range(SAMPLE_SIZE + 2, SAMPLE_SIZE + 5):
        (data / "images" / f"{k:03d}.png").write_bytes(b"not a picture")
    assert dataset_in_channels(data) == channels
    assert dataset_modality(data) == "OT"


def test_unreadable_samples_are_skipped_and_named_when_none_is_left(tmp_path, caplog):
    data = _dataset(tmp_path / "data", _rgb, ".png", count=3)
    (data / "images" / "000.png").write_bytes(b"not a picture")
    with caplog.at_level("INFO", logger="pipeline.intake.image_kind"):
        assert dataset_in_channels(data) == 3
    assert "1 of the first 3 images cannot be read (000.png)" in caplog.text
    for k in (1, 2):
        (data / "images" / f"{k:03d}.png").write_bytes(b"")
    with pytest.raises(ValueError, match="none of the first 3 images can be read") as raised:
        dataset_modality(data)
    assert all(f"{k:03d}.png" in str(raised.value) for k in range(3))
    assert "pass --modality and --in_channels" in str(raised.value)


def test_training_images_are_sampled_before_validation_ones(tmp_path):
    data = tmp_path / "data"
    _dataset(data, lambda k: _rgb(k) if k == 0 else _grey(k), ".png", count=2)
    training = [{"image": "images/001.png", "label": "masks/001.png"}]
    validation = [{"image": "images/000.png", "label": "masks/000.png"}]
    (data / "dataset.json").write_text(json.dumps({"validation": validation, "training": training}))
    assert dataset_in_channels(data) == 1


@pytest.mark.parametrize(
    "image, colour",
    [
        (np.zeros((1, 4, 4)), False),
        (np.moveaxis(_rgb(0), -1, 0), True),
        (np.moveaxis(_grey_as_rgb(0), -1, 0), False),
        (np.moveaxis(_grey_with_marker(0), -1, 0), False),
        (np.zeros((3, 4, 4)), False),  # constant
    ],
)
def test_is_colour(image, colour):
    assert is_colour(image) is colour


@pytest.mark.skipif(not KVASIR.is_dir(), reason=f"shared data folder {KVASIR} not present")
def test_kvasir_seg_needs_no_overrides(tmp_path):
    """The shared Kvasir-SEG set: ES from its dataset.json; as Simula distributes it (no datalist), OT from its RGB
    JPEG frames; colour either way."""
    assert (dataset_modality(KVASIR), dataset_in_channels(KVASIR)) == ("ES", 3)
    names = sorted(p.name for p in (KVASIR / "images").iterdir())[:5]
    copy = tmp_path / "Kvasir-SEG"
    for folder in ("images", "masks"):
        (copy / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(KVASIR / folder / name, copy / folder / name)
    (copy / "kavsir_bboxes.json").write_text("{}")  # distributed beside the folders; not a datalist
    assert (dataset_modality(copy), dataset_in_channels(copy)) == ("OT", 3)
