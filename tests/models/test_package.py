"""A trained run packaged as a MONAI bundle runs away from the repository and gives the repository's masks, for one
structure and for several; its metadata names the output channels."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import Segmenter
from pipeline.demo import write_demo_dataset
from pipeline.inference import EXIT_FLAGGED
from pipeline.models.package import main, package_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_bundle) -> tuple[Path, Path]:
    """(run folder, images) of a 2-epoch unet run at 64 x 64 with a window of its own."""
    root = tmp_path_factory.mktemp("package")
    dataset = write_demo_dataset(root / "data", num_cases=4, size=64, val_fraction=0.5, seed=10)
    run_bundle("train", dataset_dir=str(dataset), output_dir=str(root / "out"), window=[-900, 300], epochs=2)
    return root / "out" / "latest", dataset / "images"


def _masks(folder: Path, pattern: str = "*_mask.png") -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.rglob(pattern))}


def _run_away(archive: Path, images: Path, tmp_path: Path) -> Path:
    """Unzip ``archive`` into a folder of its own, run MONAI's inference command on ``images`` there, and return the
    bundle folder."""
    away = tmp_path / "elsewhere"
    away.mkdir()
    with zipfile.ZipFile(archive) as z:
        z.extractall(away)
    bundle = away / archive.stem
    command = [
        sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(bundle),  # MONAI's default run id, "run"
        "--config_file", str(bundle / "configs" / "inference.json"), "--input", str(images), "--device", "cpu",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=away, capture_output=True, text=True, timeout=300)
    flagged = json.loads((away / "outputs" / "unet" / "inference" / "summary.json").read_text())["num_flagged"]
    assert result.returncode == (EXIT_FLAGGED if flagged else 0), result.stderr[-2000:]  # a 1-epoch model's results
    return bundle


def test_packaged_bundle_runs_outside_the_repository(trained, tmp_path, run_bundle):
    run_dir, images = trained
    archive = package_run(run_dir, tmp_path / "unet_lung")
    assert archive == tmp_path / "unet_lung.zip"
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
    for part in ("configs/inference.json", "configs/metadata.json", "models/model.pt", "models/model.json",
                 "models/model.ts", "docs/README.md", "LICENSE"):  # fmt: skip
        assert f"unet_lung/{part}" in names, part
    config = json.loads((tmp_path / "unet_lung" / "configs" / "inference.json").read_text())
    assert config["spatial_size"] == [64, 64] and config["window"] == [-900, 300]
    assert "recipes" not in config and "demo_dir" not in config  # nothing that reaches into the repository
    readme = (tmp_path / "unet_lung" / "docs" / "README.md").read_text()
    assert '"pairs": 4' in readme and "| iou |" in readme and "| 0 | Lung | 1 |" in readme
    metadata = json.loads((tmp_path / "unet_lung" / "configs" / "metadata.json").read_text())
    pred = metadata["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == 1 and pred["channel_def"] == {"0": "Lung"}  # a binary model: its one structure
    card = json.loads((run_dir / "models" / "model.json").read_text())
    assert metadata["eval_metrics"] == {k.removeprefix("val_"): v for k, v in card["metrics"].items()}  # its own
    assert {"pipeline", "highdicom", "pytorch-ignite"} <= set(metadata["required_packages_version"])

    bundle = _run_away(archive, images, tmp_path)
    packaged = _masks(bundle.parent / "outputs" / "unet" / "inference")

    run_bundle("inference", input=str(images), checkpoint=str(run_dir / "models" / "model.pt"),
               output_dir=str(tmp_path / "reference"))  # fmt: skip
    expected = _masks(tmp_path / "reference")
    assert len(expected) == 4 and packaged.keys() == expected.keys()
    for name, mask in expected.items():
        assert np.array_equal(packaged[name], mask), name

    from_python = Segmenter.from_bundle(bundle, device="cpu")  # the same shared bundle, from a script
    assert from_python.settings["window"] == [-900, 300]
    for path in sorted(images.iterdir()):
        assert np.array_equal(from_python.predict(path) > 0, expected[f"{path.stem}_mask.png"] > 0), path.name


def test_packaging_refuses_what_it_cannot_package(trained, tmp_path, capsys):
    run_dir, _ = trained
    (tmp_path / "taken").mkdir()
    assert main([str(run_dir), "--out", str(tmp_path / "taken")]) == 1
    assert "exists: give a new folder" in capsys.readouterr().err
    bare = tmp_path / "bare"
    (bare / "models").mkdir(parents=True)
    shutil.copyfile(run_dir / "models" / "model.pt", bare / "models" / "model.pt")
    assert main([str(bare), "--out", str(tmp_path / "new")]) == 1
    assert "has no model card" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_a_model_of_several_structures_packages_with_its_channels_named(structures_run, tmp_path, run_bundle):
    """A 3-structure model: ``metadata.json`` names its 4 channels, background first; the packaged bundle, run away
    from the repository and from Python, writes the repository's label maps."""
    run_dir, images = structures_run
    archive = package_run(run_dir, tmp_path / "unet_organs")
    folder = tmp_path / "unet_organs"
    metadata = json.loads((folder / "configs" / "metadata.json").read_text())
    pred = metadata["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == 4
    assert pred["channel_def"] == {"0": "background", "1": "Liver", "2": "Spleen", "3": "Kidney"}
    assert metadata["label_classes"] == "a label map: 0 background, 1 Liver, 2 Spleen, 5 Kidney"
    assert metadata["pipeline_model_card"]["settings"]["out_channels"] == 4
    config = json.loads((folder / "configs" / "inference.json").read_text())
    assert [s["value"] for s in config["structures"]] == [1, 2, 5]  # written in: no datalist needed to run it
    readme = (folder / "docs" / "README.md").read_text()
    assert "| 0 | background | 0 |" in readme and "| 3 | Kidney | 5 |" in readme

    bundle = _run_away(archive, images, tmp_path)
    packaged = _masks(bundle.parent / "outputs" / "unet" / "inference", "*_labels.png")
    run_bundle("inference", input=str(images), checkpoint=str(run_dir / "models" / "model.pt"),
               output_dir=str(tmp_path / "reference"))  # fmt: skip
    expected = _masks(tmp_path / "reference", "*_labels.png")
    assert len(expected) == 4 and packaged.keys() == expected.keys()
    assert set(np.unique(np.stack(list(expected.values())))) <= {0, 1, 2, 5}
    for name, label_map in expected.items():
        assert np.array_equal(packaged[name], label_map), name

    from_python = Segmenter.from_bundle(bundle, device="cpu")
    assert [s.value for s in from_python.structures] == [1, 2, 5]
    for path in sorted(images.iterdir()):
        assert np.array_equal(from_python.predict(path), expected[f"{path.stem}_labels.png"]), path.name
