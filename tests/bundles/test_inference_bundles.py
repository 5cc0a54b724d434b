"""The inference and evaluate configs of every bundle: CLI runs on demo data, weight checks."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from PIL import Image

from pipeline.demo import write_demo_dataset
from pipeline.demo.study import write_demo_study
from pipeline.intake import DatasetCheckError

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ["cenet", "aspp", "inception_unet", "unet"]


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


def _untrained_weights(path: Path, dataset_dir: Path | None = None) -> Path:
    """Weights of the unet bundle's network for the structures of ``dataset_dir`` (default: the demo's three), without
    a model card (untrained: these tests check wiring, not accuracy)."""
    parser = ConfigParser()
    parser.read_config("bundles/unet/train.json")
    if dataset_dir is not None:
        parser["dataset_dir"] = str(dataset_dir)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def unet_weights(tmp_path_factory) -> Path:
    """:func:`_untrained_weights` of the bundle's defaults."""
    return _untrained_weights(tmp_path_factory.mktemp("weights") / "model.pt")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_default_checkpoint_is_where_training_saves(bundle):
    for kind in ("inference", "evaluate"):
        parser = ConfigParser()
        parser.read_config(f"bundles/{bundle}/{kind}.json")
        assert parser.get_parsed_content("checkpoint") == f"outputs/{bundle}/latest/models/model.pt"


def test_checkpoint_of_another_network_is_refused(tmp_path):
    parser = ConfigParser()
    parser.read_config("bundles/aspp/train.json")
    wrong = tmp_path / "aspp.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), wrong)
    parser = ConfigParser()
    parser.read_config("bundles/unet/inference.json")
    parser.update({"checkpoint": str(wrong), "device": "cpu"})
    with pytest.raises(RuntimeError) as info:  # MONAI wraps the expression's error; ours is the cause
        parser.get_parsed_content("network")
    assert isinstance(info.value.__cause__, ValueError)
    assert "aspp.pt does not fit UNet; missing keys" in str(info.value.__cause__)


def test_reports_name_every_ensemble_member_and_flip_tta(unet_weights, tmp_path):
    """With --checkpoints and --flip_tta, summary.json and report.json name the weights that ran, not model.pt."""
    members = []
    for fold in ("fold0", "fold1"):
        (tmp_path / fold).mkdir()
        members.append(tmp_path / fold / "model.pt")
        members[-1].write_bytes(unet_weights.read_bytes())
    study = write_demo_study(tmp_path / "study", size=64, num_slices=4)
    workflow = ConfigWorkflow(
        config_file="bundles/unet/inference.json",
        workflow_type="infer",
        run_id="inference",
        logging_file=False,
        input=str(study),
        output_dir=str(tmp_path / "out"),
        checkpoints=[str(m) for m in members],
        flip_tta=True,
        spatial_size=[64, 64],
        device="cpu",
    )
    workflow.initialize()
    workflow.run()
    expected = {"name": "unet", "weights": ["fold0/model.pt", "fold1/model.pt"], "flip_tta": True}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {k: summary["model"][k] for k in expected} == expected
    for report in (tmp_path / "out").rglob("report.json"):
        assert {k: json.loads(report.read_text())["model"][k] for k in expected} == expected


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env={**os.environ}, timeout=600)


@pytest.mark.slow
def test_cli_inference_on_demo_study(unet_weights, tmp_path):
    """The README's DICOM command on the synthetic two-series study: both CT series in, every output out."""
    study = write_demo_study(tmp_path / "study", size=64, num_slices=6)
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "monai.bundle", "run", "inference",
        "--config_file", str(REPO / "bundles" / "unet" / "inference.json"),
        "--input", str(study), "--output_dir", str(out),
        "--checkpoint", str(unet_weights), "--spatial_size", "[64,64]", "--device", "cpu",
    ]  # fmt: skip
    result = _run(command, cwd=tmp_path)  # any working directory: the bundle finds its own files
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_ok"] == 2 and summary["num_failed"] == 0
    assert any("LOCALIZER" in s["reason"] for s in summary["not_selected"])
    for name in ("seg.dcm", "labels.nii.gz", "overlay.png", "report.json"):
        assert len(list(out.rglob(name))) == 2, name
    # MONAI echoes the command-line arguments (the input path the user typed) before any config is read; nothing
    # after that echo may repeat the path, a folder name or a patient tag.
    log = (result.stdout + result.stderr).split("input summary of monai.bundle.scripts.run")[-1]
    log = log.split("INFO - ---\n", 1)[-1]
    assert "inference done: 2 ok" in log
    for phi in ("Demo^Synthetic", "DEMO0001", str(study)):
        assert phi not in log
        for path in out.rglob("*.json"):
            assert phi not in path.read_text()


def _evaluation(dataset: Path, weights: Path, output_dir: Path, **settings) -> ConfigWorkflow:
    """The unet bundle's evaluate.json at 64 x 64 on CPU, as ``monai.bundle run evaluating`` builds it."""
    return ConfigWorkflow(
        config_file="bundles/unet/evaluate.json",
        workflow_type="infer",
        run_id="evaluating",
        logging_file=False,
        dataset_dir=str(dataset),
        checkpoint=str(weights),
        output_dir=str(output_dir),
        spatial_size=[64, 64],
        device="cpu",
        num_workers=0,
        **settings,
    )


@pytest.mark.parametrize(
    "corrupt, problem",
    [
        ("image_nan", "NaN"),
        ("mask_values", "binary"),
    ],
)
def test_evaluate_runs_the_preflight(unet_weights, tmp_path, corrupt, problem):
    """A NaN image or a {0, 3, 7} mask in the evaluated split stops evaluation before scoring, naming the file."""
    dataset = write_demo_dataset(tmp_path / "data", num_cases=4, size=64, val_fraction=0.5, seed=2)
    with open(dataset / "pairs.csv", newline="") as f:
        victim = next(row["filename"] for row in csv.DictReader(f) if row["split"] == "val")
    if corrupt == "image_nan":
        image = tifffile.imread(dataset / "images" / victim).astype(np.float32)
        image[10:20, 10:20] = np.nan
        tifffile.imwrite(dataset / "images" / victim, image)
    else:
        mask = np.zeros((64, 64), dtype=np.uint8)
        mask[5:20, 5:20], mask[30:40, 30:40] = 3, 7
        tifffile.imwrite(dataset / "masks" / victim, mask)
    workflow = _evaluation(dataset, unet_weights, tmp_path / "eval")
    with pytest.raises(RuntimeError) as raised:
        workflow.initialize()
        workflow.run()
    cause = raised.value
    while cause is not None and not isinstance(cause, DatasetCheckError):
        cause = cause.__cause__
    assert cause is not None and victim in str(cause) and problem in str(cause), raised.value
    assert not (tmp_path / "eval" / "per_image.csv").exists()


@pytest.mark.slow
def test_evaluate(tmp_path):
    """evaluate.json: per-image CSV, summary JSON and the side-by-side figure, for the val split."""
    dataset = write_demo_dataset(tmp_path / "data", num_cases=6, size=64, val_fraction=0.5, seed=2)
    weights = _untrained_weights(tmp_path / "model.pt", dataset)  # one structure: binary lung masks
    workflow = _evaluation(dataset, weights, tmp_path / "eval", save_cases=True)
    workflow.initialize()
    workflow.run()
    rows = list(csv.DictReader((tmp_path / "eval" / "per_image.csv").open()))
    assert len(rows) == 3 and {"image", "dice", "iou", "precision", "recall", "accuracy", "hd95"} <= set(rows[0])
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["num_images"] == 3
    mean_dice = sum(float(r["dice"]) for r in rows) / 3
    assert summary["metrics"]["dice"] == pytest.approx(mean_dice, abs=1e-5)
    assert (tmp_path / "eval" / "cases.png").is_file()
    assert summary["seconds_per_image"] > 0
    # save_cases: every image with its masks, named by its row; the saved prediction is the one that was scored
    for i, row in enumerate(rows):
        image, label, pred = (
            np.asarray(Image.open(tmp_path / "eval" / "cases" / f"{i:04d}_{part}.png"))
            for part in ("image", "label", "pred")
        )
        assert image.shape == label.shape == pred.shape == (64, 64) and image.dtype == np.uint8
        assert int((pred > 0).sum()) == int(row["pred_px"]) and int((label > 0).sum()) == int(row["label_px"])
        assert int(row["image_px"]) == label.size
