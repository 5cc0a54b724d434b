"""A trained run packaged as a MONAI bundle runs away from the repository and gives the repository's masks."""

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
from pipeline.models.package import main, package_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_bundle) -> tuple[Path, Path]:
    """(run folder, images) of a 2-epoch unet run at 64 x 64 with a window of its own."""
    root = tmp_path_factory.mktemp("package")
    dataset = write_demo_dataset(root / "data", num_cases=4, size=64, val_fraction=0.5, seed=10)
    run_bundle("train", dataset_dir=str(dataset), output_dir=str(root / "out"), window=[-900, 300], epochs=2)
    return root / "out" / "latest", dataset / "images"


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.rglob("*_mask.png"))}


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
    assert '"pairs": 4' in readme and "| iou |" in readme

    away = tmp_path / "elsewhere"
    away.mkdir()
    with zipfile.ZipFile(archive) as z:
        z.extractall(away)
    bundle = away / "unet_lung"
    command = [
        sys.executable, "-m", "monai.bundle", "run", "inference", "--bundle_root", str(bundle),
        "--config_file", str(bundle / "configs" / "inference.json"), "--input", str(images), "--device", "cpu",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=away, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    packaged = _masks(away / "outputs" / "unet" / "inference")

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
