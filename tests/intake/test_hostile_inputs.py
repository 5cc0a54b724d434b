"""One table of malformed inputs, across every format and entry the pipeline takes.

Each row builds one bad input in a fresh folder and says how it must end: a clear error that names the file (and, for
datalists and pairs.csv, the item or line) with the problem, or a valid result (a finite image, a warning at most).
Files go through the pre-flight check that training, evaluation and inference share; datalists through
``load_datalist``; overrides through the training bundle's ``initialize``, as ``monai.bundle run`` runs it.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from pydicom import dcmread

from pipeline import Segmenter
from pipeline.demo import write_demo_dataset
from pipeline.demo.study import write_ct_series
from pipeline.intake import check_dataset, load_datalist

SIZE = 64
VALID = "valid"


def _picture(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0, 300, (SIZE, SIZE)) - 400).astype(np.int16)


def _mask() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 20:40] = 255
    return mask


def _pair(folder: Path, image_name: str, write_image: Callable[[Path], None], mask_name: str = "case.png",
          write_mask: Callable[[Path], None] | None = None) -> None:  # fmt: skip
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    write_image(folder / "images" / image_name)
    (write_mask or (lambda p: Image.fromarray(_mask()).save(p)))(folder / "masks" / mask_name)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


def _png(array: np.ndarray) -> Callable[[Path], None]:
    return lambda p: Image.fromarray(array).save(p)


def _cut(write: Callable[[Path], None], fraction: float) -> Callable[[Path], None]:
    def cut(p: Path) -> None:
        write(p)
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * fraction)])

    return cut


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` 8-bit grey pixels, with one empty data chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _tif(array: np.ndarray) -> Callable[[Path], None]:
    return lambda p: tifffile.imwrite(p, array)


def _with_nan(value: float) -> np.ndarray:
    image = _picture().astype(np.float32)
    image[5:9, 5:9] = value
    return image


def _dicom(edit: Callable | None = None, frames: int = 1) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        volume = _picture()[None].astype(np.float32).repeat(frames, 0)
        (source,) = write_ct_series(
            p.parent / "src", volume[:1], study_uid="1.2.3", series_uid="1.2.3.4", series_number=1,
            description="hostile", file_names=["s.dcm"],
        )  # fmt: skip
        ds = dcmread(source)
        if edit is not None:
            edit(ds)
        ds.save_as(p)
        if hasattr(edit, "patch"):
            old, new = edit.patch
            p.write_bytes(p.read_bytes().replace(old, new))
        source.unlink()
        source.parent.rmdir()

    return write


def _del(name: str) -> Callable:
    return lambda ds: delattr(ds, name)


def _raw(name: bytes, value: bytes) -> Callable:
    """Write ``value`` (4 bytes) as the raw text of a decimal string, unchecked, as a broken writer would."""
    assert name == b"RescaleSlope" and len(value) == 4

    def edit(ds) -> None:
        ds.RescaleSlope = "9.75"  # a unique 4-byte marker, replaced in the written bytes

    edit.patch = (b"9.75", value)  # type: ignore[attr-defined]
    return edit


def _nifti(array: np.ndarray) -> Callable[[Path], None]:
    return lambda p: nib.save(nib.Nifti1Image(array, np.eye(4)), p)


def _truncate_pixels(ds) -> None:
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]


def _multiframe(ds) -> None:
    ds.NumberOfFrames = 3
    ds.PixelData = ds.PixelData * 3


# (id, image name, image writer, mask name, mask writer, expected): "valid", or substrings of the fatal finding,
# which must also name the file.
FILE_CASES = [
    ("png empty", "case.png", _bytes(b""), None, None, ["unreadable image"]),
    ("png is text", "case.png", _bytes(b"hello, not an image\n"), None, None, ["unreadable image"]),
    ("png truncated", "case.png", _cut(_png(_picture().astype(np.uint16)), 0.4), None, None, ["unreadable image"]),
    ("png header 100k x 100k", "case.png", _bytes(_png_header(100_000, 100_000)), None, None, ["more than"]),
    (
        "png mask {0,3,7}",
        "case.png",
        _png(_picture().astype(np.uint16)),
        "case.png",
        _png(np.where(_mask() > 0, 3, 7).astype(np.uint8)),
        ["mask is not binary"],
    ),
    (
        "png mask other size",
        "case.png",
        _png(_picture().astype(np.uint16)),
        "case.png",
        _png(_mask()[:32, :32]),
        ["but its mask"],
    ),
    ("png 16-bit grey", "case.png", _png(_picture().astype(np.uint16)), None, None, VALID),
    (
        "png rgba mask",
        "case.png",
        _png(_picture().astype(np.uint16)),
        "case.png",
        _png(np.dstack([_mask()] * 4)),
        VALID,
    ),
    ("tiff NaN", "case.tif", _tif(_with_nan(np.nan)), None, None, ["NaN or infinite"]),
    ("tiff inf", "case.tif", _tif(_with_nan(np.inf)), None, None, ["NaN or infinite"]),
    ("tiff truncated", "case.tif", _cut(_tif(_picture()), 0.3), None, None, ["unreadable image"]),
    ("tiff 4D", "case.tif", _tif(np.zeros((2, 3, SIZE, SIZE), np.int16)), None, None, ["unreadable image"]),
    ("tiff complex", "case.tif", _tif(_picture().astype(np.complex64)), None, None, ["unreadable image"]),
    ("tiff empty mask", "case.tif", _tif(_picture()), "case.tif", _tif(np.zeros((SIZE, SIZE), np.uint8)), VALID),
    ("jpeg empty", "case.jpg", _bytes(b""), None, None, ["unreadable image"]),
    (
        "jpeg truncated",
        "case.jpg",
        _cut(_png(np.full((SIZE, SIZE), 90, np.uint8)), 0.3),
        None,
        None,
        ["unreadable image"],
    ),
    ("jpeg mask (lossy)", "case.png", _png(_picture().astype(np.uint16)), "case.jpg", _png(_mask()), VALID),
    ("dicom without pixel data", "case.dcm", _dicom(_del("PixelData")), None, None, ["unreadable image"]),
    ("dicom pixels truncated", "case.dcm", _dicom(_truncate_pixels), None, None, ["unreadable image"]),
    ("dicom slope not a number", "case.dcm", _dicom(_raw(b"RescaleSlope", b"abcd")), None, None, ["unreadable image"]),
    ("dicom slope NaN", "case.dcm", _dicom(_raw(b"RescaleSlope", b"nan ")), None, None, ["NaN or infinite"]),
    ("dicom multi-frame", "case.dcm", _dicom(_multiframe), None, None, ["unreadable image"]),
    ("dicom is text", "case.dcm", _bytes(b"DICM? no"), None, None, ["unreadable image"]),
    ("nifti volume", "case.nii.gz", _nifti(np.zeros((SIZE, SIZE, 5), np.float32)), None, None, ["unreadable image"]),
    ("nifti NaN", "case.nii.gz", _nifti(_with_nan(np.nan)), None, None, ["NaN or infinite"]),
    (
        "nifti truncated",
        "case.nii.gz",
        _cut(_nifti(_picture().astype(np.float32)), 0.5),
        None,
        None,
        ["unreadable image"],
    ),
    ("nifti empty", "case.nii", _bytes(b""), None, None, ["unreadable image"]),
]


@pytest.mark.parametrize(
    "image_name, write_image, mask_name, write_mask, expected",
    [c[1:] for c in FILE_CASES],
    ids=[c[0] for c in FILE_CASES],
)
def test_malformed_file(tmp_path, image_name, write_image, mask_name, write_mask, expected):
    folder = tmp_path / "data"
    _pair(folder, image_name, write_image, mask_name or Path(image_name).stem.split(".")[0] + ".png", write_mask)
    report = check_dataset(load_datalist(folder), num_workers=1)
    if expected == VALID:
        assert report.fatal == [], report.summary()
        assert report.images is not None and np.isfinite([report.images.minimum, report.images.maximum]).all()
        return
    problems = [f"{f.case}: {f.problem}" for f in report.fatal]
    assert any(all(s in p for s in expected) and "case." in p for p in problems), report.summary()


def _json(obj: object) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        (folder / "dataset.json").write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
        return folder / "dataset.json"

    return write


def _csv(text: str | bytes) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        (folder / "images").mkdir()
        (folder / "masks").mkdir()
        for name in ("a.png", "b.png"):
            Image.fromarray(_picture().astype(np.uint16)).save(folder / "images" / name)
            Image.fromarray(_mask()).save(folder / "masks" / name)
        (folder / "pairs.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
        return folder

    return write


DATALIST_CASES = [
    ("json not json", _json("{training: ["), ["dataset.json"]),
    ("json top-level list", _json([{"image": "a.png"}]), ["dataset.json"]),
    ("json without training", _json({"validation": []}), ["dataset.json", "training"]),
    ("json image is a number", _json({"training": [{"image": 123, "label": "m.png"}]}), ["item 0", "got 123"]),
    ("json item not a dict", _json({"training": ["a.png"]}), ["dataset.json", "item 0"]),
    ("json label missing", _json({"training": [{"image": "a.png"}]}), ["a.png", "image has no matching mask"]),
    ("json file missing", _json({"training": [{"image": "nowhere.png", "label": "m.png"}]}), ["nowhere.png"]),
    ("csv without filename column", _csv("name,split\na.png,train\n"), ["pairs.csv", "filename"]),
    ("csv empty filename", _csv("filename,split\na.png,train\n,val\n"), ["pairs.csv line 3"]),
    ("csv unknown split", _csv("filename,split\na.png,train\nb.png,banana\n"), ["pairs.csv line 3", "banana"]),
    ("csv file missing", _csv("filename,split\na.png,train\nc.png,val\n"), ["pairs.csv line 3", "c.png"]),
    ("csv mask missing", _csv("image,mask,split\na.png,a.png,train\nb.png,z.png,val\n"), ["b.png", "no matching mask"]),
    ("csv not utf-8", _csv(b"filename,split\n\xff\xfe.png,train\n"), ["pairs.csv", "not UTF-8"]),
]


@pytest.mark.parametrize("write, expected", [c[1:] for c in DATALIST_CASES], ids=[c[0] for c in DATALIST_CASES])
def test_malformed_datalist(tmp_path, write, expected):
    """Refused by ``load_datalist``, or (a listed file that is missing) by the pre-flight that every run starts with."""
    path = write(tmp_path)
    try:
        message = check_dataset(load_datalist(path), num_workers=1).summary()
    except ValueError as e:
        message = str(e)
    else:
        assert "fatal problem(s)" in message and " 0 fatal" not in message, message
    assert all(s in message for s in expected), message


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("hostile"), num_cases=4, size=64, val_fraction=0.5, seed=1)


OVERRIDE_CASES = [
    ("spatial_size zero", {"spatial_size": [0, 0]}, "--spatial_size must be two positive whole numbers"),
    ("spatial_size text", {"spatial_size": "abc"}, "--spatial_size must be two positive whole numbers"),
    ("spatial_size 3D", {"spatial_size": [64, 64, 64]}, "--spatial_size must be two positive whole numbers"),
    ("spatial_size odd", {"spatial_size": [50, 50]}, "UNet cannot take 50 x 50 inputs (--spatial_size)"),
    ("threshold above 1", {"threshold": 2}, "--threshold must be a probability strictly between 0 and 1"),
    ("batch_size zero", {"batch_size": 0}, "--batch_size must be a whole number of at least 1"),
    ("epochs zero", {"epochs": 0}, "--epochs must be a whole number of at least 1"),
    ("learning_rate negative", {"learning_rate": -1}, "--learning_rate must be a positive number"),
    ("in_channels 2", {"in_channels": 2}, "--in_channels must be 1 (grey) or 3 (colour)"),
    ("window reversed", {"window": [400, -1000]}, "lower < upper"),
    ("modality unknown", {"modality": "XYZ"}, "unknown modality 'XYZ'"),
    ("empty_masks unknown", {"empty_masks": "drop"}, "empty_masks must be one of"),
    ("val_fraction 1.5", {"val_fraction": 1.5}, "val_fraction must be in (0, 1)"),
    ("flag not a flag", {"extra_augmentation": "maybe"}, "--extra_augmentation must be true or false"),
    ("max_image_pixels tiny", {"max_image_pixels": 10}, "more than"),
]


@pytest.mark.parametrize("override, expected", [c[1:] for c in OVERRIDE_CASES], ids=[c[0] for c in OVERRIDE_CASES])
def test_malformed_override(dataset, tmp_path, override, expected, bundle_workflow):
    workflow = bundle_workflow("train", dataset_dir=str(dataset), output_dir=str(tmp_path / "out"), **override)
    with pytest.raises(Exception) as raised:
        workflow.initialize()
        workflow.run()
    cause = raised.value
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert expected in str(cause), str(cause)
    assert not list((tmp_path / "out").rglob("*.pt"))  # refused before any training


def test_the_table_is_large_enough():
    assert len(FILE_CASES) + len(DATALIST_CASES) + len(OVERRIDE_CASES) >= 30


# --------------------------------------------------------------------------------------------------------------------
# Inference inputs and model files: each row ends in a message that names the file and says what is wrong.

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "binary_model_964005e"
SMALL_UNET = {"network_def#channels": [4, 8, 16, 32, 64]}  # how the fixture model was trained


class _Pickled:
    """An object a pickle would rebuild, running code of the sender's choosing."""


def _model_folder(tmp: Path, weights: Callable[[Path], None] | None = None, card: str | None = None) -> Path:
    folder = tmp / "model"
    folder.mkdir()
    (weights or (lambda p: p.write_bytes((FIXTURE / "model.pt").read_bytes())))(folder / "model.pt")
    (folder / "model.json").write_text(card if card is not None else (FIXTURE / "model.json").read_text())
    return folder / "model.pt"


def _predict(tmp: Path, name: str, make: Callable[[Path], None], weights: Path = FIXTURE / "model.pt") -> None:
    make(tmp / name)
    Segmenter(weights, device="cpu", **SMALL_UNET).predict(tmp / name)


def _symlink_loop(p: Path) -> None:
    p.symlink_to(p.name)


def _folder(p: Path) -> None:
    p.mkdir()


def _dangling(p: Path) -> None:
    p.symlink_to("nowhere.png")


def _pickled_weights(tmp: Path) -> None:
    weights = _model_folder(tmp, weights=lambda p: torch.save({"model": _Pickled()}, p))
    _predict(tmp, "case.tif", _tif(_picture()), weights)


def _corrupt_card(tmp: Path) -> None:
    _predict(tmp, "case.tif", _tif(_picture()), _model_folder(tmp, card="{not json"))


def _output_is_input(tmp: Path) -> None:
    (tmp / "in").mkdir()
    tifffile.imwrite(tmp / "in" / "case.tif", _picture())
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file",
         str(Path(__file__).resolve().parents[2] / "bundles" / "unet" / "inference.json"),
         "--checkpoint", str(FIXTURE / "model.pt"), "--network_def#channels", "[4,8,16,32,64]",
         "--input", str(tmp / "in"), "--output_dir", str(tmp / "in"), "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    raise RuntimeError(result.stderr.strip().splitlines()[-2] if result.returncode else "exit 0")


INFERENCE_CASES = [
    ("symbolic link loop", lambda t: _predict(t, "case.png", _symlink_loop), ["case.png", "symbolic link loop"]),
    ("a folder named like an image", lambda t: _predict(t, "case.png", _folder), ["case.png", "is a folder"]),
    ("link to nothing", lambda t: _predict(t, "case.png", _dangling), ["case.png", "link to nothing"]),
    ("pickled checkpoint", _pickled_weights, ["model.pt holds Python objects", "_Pickled", "refused"]),
    ("corrupt model card", _corrupt_card, ["model.json (the model card of model.pt) is unreadable"]),
    ("output folder is the input", _output_is_input, ["is the input folder", "Pass another --output_dir"]),
]


@pytest.mark.parametrize("run, expected", [c[1:] for c in INFERENCE_CASES], ids=[c[0] for c in INFERENCE_CASES])
def test_hostile_inference_input(tmp_path, run, expected):
    with pytest.raises(Exception) as raised:  # the row says which message, whatever the type
        run(tmp_path)
    message = str(raised.value)
    assert all(e in message for e in expected), message
    assert "weights_only=False" not in message  # never torch's advice to unpickle anyway
