"""No patient identifier reaches an output: training, evaluation and inference on data full of sentinel identifiers.

The DICOM files carry sentinel values in PatientName, PatientID, PatientBirthDate, InstitutionName and
AccessionNumber, and the patient's name is in the folder names, as in a PACS export. Every file the three commands
write is searched for them: logs, JSON, CSV, PNG (metadata included), NIfTI, TensorBoard events, checkpoints and
training state. The documented exception is the DICOM SEG, whose patient module the standard requires.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from monai.bundle import ConfigWorkflow
from PIL import Image

from pipeline.demo.slices import synthesize_ct_slice
from pipeline.demo.study import synthesize_ct_volume, write_ct_series

REPO = Path(__file__).resolve().parents[2]
UNET = REPO / "bundles" / "unet"
SENTINELS = {
    "PatientName": "Sentinel^Patricia",
    "PatientID": "PIDSENTINEL4711",
    "PatientBirthDate": "19230405",
    "InstitutionName": "Sentinel Memorial Hospital",
    "AccessionNumber": "ACCSENT0815",
}
FOLDER = "Sentinel^Patricia PIDSENTINEL4711"  # a patient's name and ID in the folder names, as PACS exports have
NEEDLES = [*SENTINELS.values(), "Sentinel^Patricia".replace("^", " "), "Patricia"]


def _stamp(path: Path) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in SENTINELS.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)


def _dataset(root: Path) -> Path:
    """Four 64 x 64 DICOM slices with sentinel headers and PNG masks, under a folder named after the patient."""
    data = root / FOLDER
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for i in range(4):
        image, mask = synthesize_ct_slice(np.random.default_rng([7, i]), 64)
        (path,) = write_ct_series(data / "images" / f"tmp{i}", image[None].astype(np.float32), study_uid=f"1.2.9.{i}",
                                  series_uid=f"1.2.9.{i}.1", series_number=1, description="x",
                                  file_names=[f"case{i}.dcm"])  # fmt: skip
        _stamp(path)
        path.rename(data / "images" / f"case{i}.dcm")
        path.parent.rmdir()
        Image.fromarray(mask * 255).save(data / "masks" / f"case{i}.png")
    return data


def _study(root: Path) -> Path:
    hu, _ = synthesize_ct_volume(size=64, num_slices=4, seed=3)
    files = write_ct_series(root / FOLDER / "01-01-2000-Thorax" / "2-Thorax B40f", hu, study_uid="1.2.9.9",
                            series_uid="1.2.9.9.1", series_number=2, description="Thorax B40f",
                            pixel_spacing=(350 / 64, 350 / 64), slice_thickness=8.0)  # fmt: skip
    for path in files:
        _stamp(path)
    return root / FOLDER


def _workflow(config: Path, kind: str, run_id: str, **settings) -> ConfigWorkflow:
    common = {"spatial_size": [64, 64], "device": "cpu", "num_workers": 0}
    return ConfigWorkflow(config_file=str(config), workflow_type=kind, run_id=run_id, logging_file=False,
                          **common, **settings)  # fmt: skip


@pytest.mark.slow
def test_no_identifier_in_any_output(tmp_path, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    data, study = _dataset(tmp_path / "inputs"), _study(tmp_path / "pacs")
    out = tmp_path / "out"

    train = _workflow(UNET / "train.json", "train", "training", dataset_dir=str(data), output_dir=str(out / "train"),
                      epochs=2, batch_size=2, val_fraction=0.5)  # fmt: skip
    train.initialize()
    train.run()
    train.finalize()
    weights = out / "train" / "latest" / "models" / "model.pt"
    evaluate = _workflow(UNET / "evaluate.json", "infer", "evaluating", dataset_dir=str(data), checkpoint=str(weights),
                         output_dir=str(out / "eval"), save_cases=True)  # fmt: skip
    evaluate.initialize()
    evaluate.run()
    infer = _workflow(UNET / "inference.json", "infer", "inference", input=str(study), checkpoint=str(weights),
                      output_dir=str(out / "infer"))  # fmt: skip
    infer.initialize()
    infer.run()

    written = [p for p in out.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in written}
    assert {".json", ".csv", ".png", ".pt", ".gz", ".dcm"} <= kinds, kinds  # every kind of output was produced
    assert any(p.name.startswith("events.out.tfevents") for p in written)
    hits = []
    for path in written:
        if path.name in ("seg.dcm", "sr.dcm"):  # the documented exception: the standard requires the patient module
            seg = pydicom.dcmread(path)
            assert seg.PatientID == SENTINELS["PatientID"]  # (it really is the patient's SEG or SR)
            continue
        content = path.read_bytes()
        hits += [(str(path.relative_to(out)), needle) for needle in NEEDLES if needle.encode() in content]
        hits += [(path.name, needle) for needle in NEEDLES if needle in path.name]
    assert not hits, hits
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert not [needle for needle in NEEDLES if needle in logged], [n for n in NEEDLES if n in logged]
    assert len(written) >= 18
