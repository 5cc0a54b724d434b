"""Inference runs end to end on synthetic studies and images, with a real network whose answer is known.

``BrightRegion`` is a 1x1 convolution with fixed weights: after the CT window [-1000, 400] HU scales intensities to
[0, 1], its logit is positive exactly where HU > -300. The expected mask is therefore known for every input, which
makes geometry (slice order, orientation, NIfTI affine, SEG frames) checkable voxel by voxel.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
import torch
from monai.inferers import SlidingWindowInferer
from monai.transforms import Activationsd, AsDiscreted, Compose, Invertd, Resized
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid
from torch import nn

from pipeline.demo.study import write_ct_series
from pipeline.inference import InferenceError, InferenceRunner, NonFiniteOutputError, SlicePredictor
from pipeline.outputs import read_dicom_seg, run_dciodvfy
from pipeline.transforms import AdjustChannelsd, ScaleIntensityForModalityd, VolumeCleanup

SIZE = 32
THRESHOLD_HU = -300.0


class BrightRegion(nn.Module):
    """Logit 40 * (x - t): positive where the windowed intensity exceeds the HU threshold."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        level = (THRESHOLD_HU + 1000.0) / 1400.0
        with torch.no_grad():
            self.conv.weight.fill_(40.0)
            self.conv.bias.fill_(-40.0 * level)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _predictor(spatial_size: int = SIZE) -> SlicePredictor:
    preprocessing = Compose(
        [
            AdjustChannelsd("image", num_channels=1),
            ScaleIntensityForModalityd("image", modality="CT", window=(-1000, 400)),
            Resized("image", spatial_size=(spatial_size, spatial_size), mode="bilinear", anti_aliasing=True),
        ]
    )
    postprocessing = Compose(
        [
            Activationsd("pred", sigmoid=True),
            Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=False),
            AsDiscreted("pred", threshold=0.5),
        ]
    )
    inferer = SlidingWindowInferer(roi_size=(spatial_size, spatial_size), sw_batch_size=4)
    return SlicePredictor(BrightRegion(), preprocessing, inferer, postprocessing, batch_size=4)


def _phantom(num_slices: int, seed: int = 0) -> np.ndarray:
    """Air background with a bright box whose extent changes along z, so that slice order matters."""
    volume = np.full((num_slices, SIZE, SIZE), -1000.0, dtype=np.float32)
    for k in range(num_slices):
        volume[k, 4 : 10 + k, 6 : 20 + (k % 3)] = 200.0
    return volume


def _series(folder: Path, volume: np.ndarray, number: int, study_uid: str, **kwargs) -> tuple[str, list[Path]]:
    series_uid = generate_uid()
    files = write_ct_series(
        folder,
        volume,
        study_uid=study_uid,
        series_uid=series_uid,
        series_number=number,
        description=f"Synthetic {number}",
        **kwargs,
    )
    return series_uid, files


def _only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.rglob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_study_outputs_match_geometry(tmp_path):
    """Shuffled instance numbers, two series: each mask lands on the right slices and patient coordinates."""
    study = tmp_path / "Doe^Jane 12345" / "study"
    study_uid = generate_uid()
    volume = _phantom(6)
    rng = np.random.default_rng(0)
    shuffled = [int(i) for i in rng.permutation(6) + 1]
    uid_a, files_a = _series(study / "series a", volume, 2, study_uid, instance_numbers=shuffled)
    _series(study / "series b", volume[::-1].copy(), 3, study_uid)
    (study / "README.txt").write_text("exported by a PACS")

    summary = InferenceRunner(_predictor(), study, tmp_path / "out", algorithm_name="test", algorithm_version="1").run()

    assert summary["num_ok"] == 2 and summary["num_failed"] == 0
    assert [s["file"] for s in summary["skipped_files"]] == ["README.txt"]
    report_path = next(p for p in (tmp_path / "out").rglob("report.json") if json.loads(p.read_text())[
        "series_instance_uid"] == uid_a)  # fmt: skip
    report = json.loads(report_path.read_text())
    folder = report_path.parent
    expected = (volume > THRESHOLD_HU).astype(np.uint8)  # written in ascending position order

    nifti = nib.load(folder / "labels.nii.gz")
    labels = np.asarray(nifti.dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(labels, expected)
    # voxel (column 7, row 5, slice 3) -> patient LPS from the DICOM header of that slice, RAS in NIfTI
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files_a]
    headers.sort(key=lambda d: d.ImagePositionPatient[2])
    ds = headers[3]
    row_dir, col_dir = np.array(ds.ImageOrientationPatient[:3]), np.array(ds.ImageOrientationPatient[3:])
    lps = np.array(ds.ImagePositionPatient) + 7 * ds.PixelSpacing[1] * row_dir + 5 * ds.PixelSpacing[0] * col_dir
    ras = nifti.affine @ np.array([7, 5, 3, 1.0])
    np.testing.assert_allclose(ras[:3], lps * np.array([-1, -1, 1]), atol=1e-4)

    seg = read_dicom_seg(folder / "seg.dcm", headers)
    np.testing.assert_array_equal(seg, expected)
    voxel_ml = ds.PixelSpacing[0] * ds.PixelSpacing[1] * report["spacing_mm"]["slice"] / 1000.0
    assert report["segmented_volume_ml"] == pytest.approx(expected.sum() * voxel_ml, rel=1e-6)
    assert report["num_slices"] == 6 and len(report["per_slice"]) == 6
    assert (folder / "overlay.png").is_file()

    # no directory name (patient name / ID in PACS exports) in any file name or JSON
    for path in (tmp_path / "out").rglob("*"):
        assert "Doe" not in str(path.relative_to(tmp_path)) and "12345" not in str(path.relative_to(tmp_path))
        if path.suffix == ".json":
            assert "Doe" not in path.read_text() and "12345" not in path.read_text()


def test_seg_passes_dciodvfy(tmp_path):
    study_uid = generate_uid()
    _series(tmp_path / "study", _phantom(4), 5, study_uid)
    InferenceRunner(_predictor(), tmp_path / "study", tmp_path / "out").run()
    for name in ("seg.dcm", "sr.dcm"):
        result = run_dciodvfy(_only(tmp_path / "out", name))
        if result is None:
            pytest.skip("dciodvfy (dicom3tools) is not installed")
        errors, text = result
        assert errors == 0, text


@pytest.mark.parametrize(
    "break_it, message",
    [
        ("missing_position", "ImagePositionPatient"),
        ("no_codec", "1.2.840.10008.1.2.4.110"),
    ],
)
def test_bad_series_fails_alone(tmp_path, break_it, message, caplog):
    """One broken series fails with a message naming the file and the problem; the other is still written."""
    study_uid = generate_uid()
    good_uid, _ = _series(tmp_path / "study" / "good", _phantom(4), 2, study_uid)
    _, bad_files = _series(tmp_path / "study" / "Patient^Bad", _phantom(4), 3, study_uid)
    victim = bad_files[1]
    ds = pydicom.dcmread(victim)
    if break_it == "missing_position":
        del ds.ImagePositionPatient
        ds.save_as(victim, enforce_file_format=True)
    else:  # relabel as JPEG XL, which pydicom 3 has no decoder for (the bytes are never decoded)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.110"
        ds.PixelData = encapsulate([b"\xff\x0a" + bytes(64)])
        ds["PixelData"].VR = "OB"
        ds.save_as(victim, implicit_vr=False, little_endian=True, force_encoding=True)

    with caplog.at_level(logging.INFO), pytest.raises(InferenceError, match=message):
        InferenceRunner(_predictor(), tmp_path / "study", tmp_path / "out").run()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    failed = [r for r in summary["inputs"] if r["status"] == "failed"]
    ok = [r for r in summary["inputs"] if r["status"] == "ok"]
    assert len(failed) == 1 and victim.name in failed[0]["error"] and message in failed[0]["error"]
    assert [r["series_instance_uid"] for r in ok] == [good_uid]
    assert len(list((tmp_path / "out").rglob("seg.dcm"))) == 1
    assert "Patient^Bad" not in failed[0]["error"]  # the file is named without its folders


def test_images_folder_with_bad_files(tmp_path):
    """2D images: masks (0/255) and overlays for the good ones; the tiny and the corrupt image fail alone."""
    images = tmp_path / "images"
    (images / "Doe^Jane 12345").mkdir(parents=True)
    picture = np.full((40, 48), -1000, dtype=np.int16)
    picture[10:30, 5:25] = 300
    Image.fromarray(picture.astype(np.int32)).save(images / "Doe^Jane 12345" / "good.tif")
    Image.fromarray(picture.astype(np.int32)).save(images / "good.tif")
    dark = np.zeros((40, 48), np.uint8)
    dark[5:10, 5:10] = 1  # not constant (a constant image is refused): a dark 8-bit picture, nothing above -300 HU
    Image.fromarray(dark).save(images / "good.png")  # same stem: must not overwrite
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "tiny.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")

    (images / "Doe^Jane 12345" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    holes = picture.astype(np.float32)
    holes[0, :5] = np.nan
    tifffile.imwrite(images / "holes.tif", holes)  # NaN pixels: refused, not an "ok" with an empty mask

    with pytest.raises(InferenceError, match="4 of 7 inputs failed"):
        InferenceRunner(_predictor(), images, tmp_path / "out").run()
    out = tmp_path / "out" / "images"
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 6 and {"good_mask.png", "good_2_mask.png"} <= set(names)  # a.png and a.tif both kept
    nested = next(n for n in names if n.endswith("_good_mask.png") and not n.startswith("good"))
    for name in (nested, "good_2_mask.png"):  # good.png sorts before good.tif and keeps the plain name
        mask = np.asarray(Image.open(out / name))
        np.testing.assert_array_equal(mask, np.where(picture > THRESHOLD_HU, 255, 0))
    summary_text = (tmp_path / "out" / "summary.json").read_text()
    assert "Doe" not in summary_text and "12345" not in summary_text and "Doe" not in "".join(names)
    errors = {r["input"]: r.get("error", "") for r in json.loads(summary_text)["inputs"]}
    assert "8x8 pixels" in errors["tiny"] and "broken.png" in errors["broken"]
    assert "holes.tif: 5 of 1920 pixel values are NaN or infinite" in errors["holes"]


def _referencing_study_without_class(path: Path) -> None:
    ds = pydicom.dcmread(path)
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = generate_uid()  # no ReferencedSOPClassUID: common in anonymised archives
    complete = pydicom.Dataset()
    complete.ReferencedSOPClassUID, complete.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", generate_uid()
    ds.ReferencedStudySequence = [item, complete]
    ds.save_as(path, enforce_file_format=True)


def test_seg_of_a_non_conformant_source_passes_dciodvfy(tmp_path):
    """The source's ReferencedStudySequence item lacks ReferencedSOPClassUID (dciodvfy flagged the copy): it is
    dropped from the SEG, the complete item is kept, and the source files are unchanged."""
    _, files = _series(tmp_path / "study", _phantom(3), 6, generate_uid())
    for path in files:
        _referencing_study_without_class(path)
    before = [path.read_bytes() for path in files]
    InferenceRunner(_predictor(), tmp_path / "study", tmp_path / "out").run()
    seg = pydicom.dcmread(_only(tmp_path / "out", "seg.dcm"))
    assert [item.ReferencedSOPClassUID for item in seg.ReferencedStudySequence] == ["1.2.840.10008.3.1.2.3.1"]
    assert [path.read_bytes() for path in files] == before
    result = run_dciodvfy(_only(tmp_path / "out", "seg.dcm"))
    if result is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    errors, text = result
    assert errors == 0, text


def test_series_that_cannot_have_a_seg_gets_its_other_outputs(tmp_path, caplog):
    """No FrameOfReferenceUID: highdicom cannot reference the series, but the mask, overlay and report are written
    and the summary says why the SEG is missing."""
    _, files = _series(tmp_path / "study", _phantom(3), 7, generate_uid())
    for path in files:
        ds = pydicom.dcmread(path)
        del ds.FrameOfReferenceUID
        ds.save_as(path, enforce_file_format=True)
    summary = InferenceRunner(_predictor(), tmp_path / "study", tmp_path / "out").run()
    (record,) = summary["inputs"]
    assert record["status"] == "ok" and record["seg_missing"].startswith("no DICOM SEG")
    assert not list((tmp_path / "out").rglob("seg.dcm")) and not list((tmp_path / "out").rglob("sr.dcm"))
    for name in ("labels.nii.gz", "overlay.png", "report.json"):
        assert _only(tmp_path / "out", name).is_file()
    report = json.loads(_only(tmp_path / "out", "report.json").read_text())
    assert report["outputs"] == ["labels.nii.gz", "overlay.png", "report.json"] and report["seg_missing"]
    assert any("no DICOM SEG" in r.message for r in caplog.records)


def test_anonymised_series_without_type2_attributes(tmp_path):
    """Anonymised exports lack AccessionNumber, StudyID...: the SEG is still written (empty Type 2 values)."""
    _, files = _series(tmp_path / "study", _phantom(3), 4, generate_uid())
    for path in files:
        ds = pydicom.dcmread(path)
        for keyword in ("AccessionNumber", "StudyID", "PatientName", "StudyDate"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(path, enforce_file_format=True)
    summary = InferenceRunner(_predictor(), tmp_path / "study", tmp_path / "out").run()
    assert summary["num_ok"] == 1 and len(list((tmp_path / "out").rglob("seg.dcm"))) == 1


@pytest.mark.parametrize("shape", [(SIZE, SIZE), (96, 80), (20 * 3, 50 * 3)])
def test_single_image_file_mask_at_native_size(tmp_path, shape):
    """The model runs at SIZE x SIZE; the mask comes back on the image's own grid (exact when no resize is needed)."""
    picture = np.full(shape, -1000, dtype=np.int16)
    picture[shape[0] // 4 : shape[0] // 2, shape[1] // 5 : shape[1] * 3 // 4] = 100
    path = tmp_path / "slice.tif"
    Image.fromarray(picture.astype(np.int32)).save(path)
    summary = InferenceRunner(_predictor(), path, tmp_path / "out").run()
    mask = np.asarray(Image.open(tmp_path / "out" / "images" / "slice_mask.png")) > 0
    truth = picture > THRESHOLD_HU
    assert mask.shape == shape and summary["inputs"][0]["area_px"] == mask.sum()
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou == 1.0 if shape == (SIZE, SIZE) else iou > 0.9


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="nothing to segment"):
        InferenceRunner(_predictor(), tmp_path / "empty", tmp_path / "out").run()


def test_network_size_checked_before_any_input(tmp_path):
    """A model input size the network cannot take fails once, up front, with the network's own message."""

    class NeedsMultipleOf16(nn.Module):
        def forward(self, x):
            if x.shape[-1] % 16:
                raise ValueError(f"NeedsMultipleOf16 needs H and W multiples of 16; got {tuple(x.shape)}")
            return x[:, :1]

    predictor = _predictor(spatial_size=24)
    predictor.network = NeedsMultipleOf16()
    _series(tmp_path / "study", _phantom(3), 1, generate_uid())
    with pytest.raises(ValueError, match="multiples of 16"):
        InferenceRunner(predictor, tmp_path / "study", tmp_path / "out").run()
    assert not list((tmp_path / "out").rglob("seg.dcm"))


def test_sliding_window_when_the_slice_is_larger_than_the_model_input(tmp_path):
    """Without a resize, a 40 x 48 slice runs as 16 x 16 windows and the mask still covers the whole slice."""
    preprocessing = Compose(
        [
            AdjustChannelsd("image", num_channels=1),
            ScaleIntensityForModalityd("image", modality="CT", window=(-1000, 400)),
        ]
    )
    postprocessing = Compose([Activationsd("pred", sigmoid=True), AsDiscreted("pred", threshold=0.5)])
    inferer = SlidingWindowInferer(roi_size=(16, 16), sw_batch_size=4, overlap=0.25)
    predictor = SlicePredictor(BrightRegion(), preprocessing, inferer, postprocessing, batch_size=2)
    picture = np.full((3, 40, 48), -1000.0, dtype=np.float32)
    picture[:, 7:33, 3:41] = 250.0
    picture[1, 20:, :] = -1000.0
    masks = predictor([{"image": torch.from_numpy(s)[None]} for s in picture])
    np.testing.assert_array_equal(torch.stack([m[0] for m in masks]).numpy(), picture > THRESHOLD_HU)


def test_volume_cleanup_in_the_study_outputs(tmp_path):
    """Gas below the lungs and speckle outside the body leave the written mask; report.json keeps both volumes."""
    volume = np.full((8, SIZE, SIZE), -1000.0, dtype=np.float32)
    volume[1:6, 4:24, 3:13] = 200.0  # "lungs": what BrightRegion segments
    volume[1:6, 4:24, 17:28] = 200.0
    volume[3, 12:14, 6:8] = -1000.0  # a hole inside the left one
    volume[7, 26:30, 12:18] = 200.0  # a bubble below them
    volume[0, 1, 30] = 200.0  # speckle
    _series(tmp_path / "study", volume, 2, generate_uid())
    cleanup = VolumeCleanup(keep_largest=2, min_volume_ml=0.0, fill_holes=True)
    InferenceRunner(_predictor(), tmp_path / "study", tmp_path / "out", volume_cleanup=cleanup).run()
    report = json.loads(_only(tmp_path / "out", "report.json").read_text())
    labels = np.asarray(nib.load(_only(tmp_path / "out", "labels.nii.gz")).dataobj).transpose(2, 1, 0)
    expected = np.zeros(volume.shape, np.uint8)
    expected[1:6, 4:24, 3:13] = 1
    expected[1:6, 4:24, 17:28] = 1
    np.testing.assert_array_equal(labels, expected)
    voxel_ml = report["segmented_volume_ml"] / expected.sum()
    assert report["volume_before_postprocessing_ml"] == pytest.approx((volume > THRESHOLD_HU).sum() * voxel_ml)
    assert (
        report["postprocessing"]["components_found"] == 4 and len(report["postprocessing"]["components_kept_ml"]) == 2
    )
    assert report["postprocessing"]["filled_ml"] == pytest.approx(4 * voxel_ml, abs=0.005)  # rounded to 0.01 mL


def test_output_inside_the_input_is_not_segmented_again(tmp_path):
    """--output_dir inside the input folder, twice: the second run segments the same one image, not the first run's
    masks and overlays."""
    images = tmp_path / "images"
    images.mkdir()
    picture = np.full((40, 48), -1000, dtype=np.int16)
    picture[10:30, 5:25] = 300
    Image.fromarray(picture.astype(np.int32)).save(images / "scan.tif")
    for _ in range(2):
        summary = InferenceRunner(_predictor(), images, images / "out").run()
        assert [r["input"] for r in summary["inputs"]] == ["scan"] and summary["num_ok"] == 1


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_unwritable_output_fails_before_any_input(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(images / "scan.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    predictor = _predictor()
    with pytest.raises(OSError, match=r"cannot write to the output folder .*--output_dir"):
        InferenceRunner(predictor, images, locked / "out").run()


def test_output_that_is_a_file_fails_before_any_input(tmp_path):
    """The same check where permissions cannot be tested (root): the output path is an existing file."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(images / "scan.png")
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(OSError, match="cannot write to the output folder"):
        InferenceRunner(_predictor(), images, tmp_path / "taken").run()


def _mixed_inputs(root: Path) -> None:
    """Three series (one broken: a slice without its position) and 2D images (one corrupt), in one folder."""
    study_uid = generate_uid()
    for number in (2, 3, 4):
        _series(root / "study" / f"s{number}", _phantom(5 + number, seed=number), number, study_uid)
    broken = sorted((root / "study" / "s3").iterdir())[2]
    ds = pydicom.dcmread(broken)
    del ds.ImagePositionPatient  # this series fails when it is read, the others do not
    ds.save_as(broken, enforce_file_format=True)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(9):
        picture = np.where(rng.random((40, 36)) < 0.4, 300, -1000).astype(np.int32)
        Image.fromarray(picture).save(images / f"im{i}.tif")
    (images / "im4.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")


def _run_mixed(root: Path, out: Path, overlap: bool) -> dict:
    predictor = _predictor()
    predictor.batch_size = 2
    runner = InferenceRunner(
        predictor, root, out, batch_size=4, volume_cleanup=VolumeCleanup(keep_largest=1), overlap=overlap
    )
    with pytest.raises(InferenceError, match="2 of 13 inputs failed"):
        runner.run()
    return json.loads((out / "summary.json").read_text())


def _without_timings(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("seconds", "model_forward_s")}


def test_overlapped_run_equals_the_stages_in_turn(tmp_path: Path) -> None:
    assert InferenceRunner(_predictor(), tmp_path, tmp_path / "out").overlap is False  # by default, on CUDA only
    _mixed_inputs(tmp_path / "in")
    sequential = _run_mixed(tmp_path / "in", tmp_path / "sequential", overlap=False)
    overlapped = _run_mixed(tmp_path / "in", tmp_path / "overlapped", overlap=True)

    assert [_without_timings(r) for r in overlapped["inputs"]] == [_without_timings(r) for r in sequential["inputs"]]
    assert [r["status"] for r in sequential["inputs"]] == ["ok", "failed", "ok"] + ["ok"] * 4 + ["failed"] + ["ok"] * 5
    files = sorted(p.relative_to(tmp_path / "sequential") for p in (tmp_path / "sequential").rglob("*.*"))
    assert files == sorted(p.relative_to(tmp_path / "overlapped") for p in (tmp_path / "overlapped").rglob("*.*"))
    for name in files:
        a, b = tmp_path / "sequential" / name, tmp_path / "overlapped" / name
        if name.suffix == ".png":
            np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
        elif name.name == "labels.nii.gz":
            np.testing.assert_array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj))
        elif name.name == "report.json":
            reports = [json.loads(p.read_text()) for p in (a, b)]
            without_timings = [{k: v for k, v in report.items() if k != "timings"} for report in reports]
            assert without_timings[0] == without_timings[1]
            assert {"read_s", "preprocess_s", "predict_s", "restore_s", "postprocess_s", "total_s"} <= set(
                reports[1]["timings"]
            )


class BrokenWhereBright(BrightRegion):
    """Finite weights whose output is NaN wherever the windowed image saturates (HU >= 400), as a diverged model's
    is on inputs it was not trained for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 1.0, torch.nan, super().forward(x))


def test_weights_that_give_nan_fail_before_any_output(tmp_path):
    """A normalisation layer with a negative running variance: finite weights, NaN logits. The run stops at the
    up-front check with a message that says so, and writes no mask, SEG or summary that could read as a result."""
    predictor = _predictor()
    norm = nn.BatchNorm2d(1).eval()
    norm.running_var.fill_(-1.0)
    predictor.network = nn.Sequential(BrightRegion(), norm).eval()
    _series(tmp_path / "study", _phantom(3), 1, generate_uid())
    checkpoint = tmp_path / "Doe^Jane" / "broken.pt"  # named by file name only
    with pytest.raises(NonFiniteOutputError, match=r"^broken\.pt: .*NaN or infinite values .* the weights are broken"):
        InferenceRunner(predictor, tmp_path / "study", tmp_path / "out", checkpoint=checkpoint).run()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_nan_outputs_fail_that_input_alone(tmp_path):
    """NaN for one series and one image (never "ok" with an empty mask); the others are written as usual."""
    predictor = _predictor()
    predictor.network = BrokenWhereBright()
    study_uid = generate_uid()
    healthy = _phantom(3)
    saturated = _phantom(3)
    saturated[:, 20:24, 20:24] = 3000.0
    _series(tmp_path / "in" / "study" / "1", healthy, 1, study_uid)
    _series(tmp_path / "in" / "study" / "2", saturated, 2, study_uid)
    (tmp_path / "in" / "images").mkdir()
    tifffile.imwrite(tmp_path / "in" / "images" / "fine.tif", healthy[0].astype(np.int16))
    tifffile.imwrite(tmp_path / "in" / "images" / "saturated.tif", saturated[0].astype(np.int16))
    with pytest.raises(InferenceError, match="2 of 4 inputs failed"):
        InferenceRunner(predictor, tmp_path / "in", tmp_path / "out").run()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    status = {r["input"]: (r["status"], r.get("error", "")) for r in summary["inputs"]}
    failed = {name for name, (s, error) in status.items() if s == "failed" and "NaN or infinite" in error}
    assert len(status) == 4 and len(failed) == 2, status
    assert {name.split("_")[1] for name in failed} == {"s002", "saturated"}
    assert len(list((tmp_path / "out").rglob("seg.dcm"))) == 1
    assert len(list((tmp_path / "out").rglob("*_fine_mask.*"))) == 1
    assert not list((tmp_path / "out").rglob("*_saturated_mask.*"))
