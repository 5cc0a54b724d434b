"""The wheel a user installs: built with ``python -m build`` from the clone's sources, installed into a fresh virtual
environment, and used from an empty folder with the documented commands and the Python API.

Nothing here imports the clone's package: every step runs in the new environment's own Python, in a folder outside the
clone, and the package it runs is checked to be the installed one (its bundles are package data).

The one test of the suite that needs the package index: pip installs torch (this environment's version, from the
index or the local wheels pip is configured to find, as the README's command does) and the wheel's dependencies into
the new environment. Offline it fails at that step, with pip's message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "requirements.txt", "pipeline")
"""What the source distribution is built from, with ``bundles/`` (the rest of the clone is tests, docs and datasets)."""
TRAINING = ["--epochs", "1", "--batch_size", "2", "--spatial_size", "[64,64]", "--device", "cpu", "--num_workers", "0"]
BUNDLE = ["python", "-m", "monai.bundle", "run"]


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None, status: tuple[int, ...] = (0,)) -> str:
    """``command``'s standard output, after checking it exited with one of ``status``."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode in status, f"{command[:4]} exited {result.returncode}:\n{output}"
    return result.stdout


@pytest.fixture
def environment(tmp_path_factory) -> dict[str, str]:
    """A fresh virtual environment with the wheel built from the clone installed (as the README installs torch first);
    its ``PATH`` first, for the installed commands."""
    root = tmp_path_factory.mktemp("wheel")
    (root / "src").mkdir()
    for name in (*SOURCES, "bundles"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / "src" / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(source, root / "src" / name)
    # sdist, then the wheel from the sdist, as `python -m build` does; with this environment's setuptools
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(root / "dist"), str(root / "src")], root)
    wheels = list((root / "dist").glob("medical_slice_segmentation-*.whl"))
    assert len(wheels) == 1, sorted(p.name for p in (root / "dist").iterdir())
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], root)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", f"torch=={torch.__version__.split('+')[0]}"], root)
    _run([python, "-m", "pip", "install", "-q", str(wheels[0])], root)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env | {"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv)}


def _holds_the_package_and_its_bundles(environment: dict[str, str], tmp_path: Path) -> None:
    package = Path(_run(["python", "-c", "import pipeline; print(pipeline.__file__)"], tmp_path, environment).strip())
    assert Path(environment["VIRTUAL_ENV"]) in package.parents and REPO not in package.parents
    listed = [line.split() for line in _run(["pipeline-bundles"], tmp_path, environment).splitlines()]
    assert [name for name, _ in listed] == ["aspp", "cenet", "inception_unet", "unet"]
    for name, folder in listed:
        assert Path(folder) == package.parent / "bundles" / name
        assert {p.name for p in Path(folder).iterdir()} >= {
            "train.json",
            "inference.json",
            "metadata.json",
            "logging.conf",
        }
    assert (package.parent / "bundles" / "bundle_ids.yaml").is_file()  # --help reads it


def test_the_installed_wheel_trains_infers_evaluates_exports_and_packages_from_an_empty_folder(environment, tmp_path):
    """One test, so that one worker builds the environment (each xdist worker would build its own)."""
    _holds_the_package_and_its_bundles(environment, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    unet = _run(["pipeline-bundles", "unet"], work, environment).strip()
    demo = ["python", "-c", f"from pipeline.demo import demo_dataset_dir; print(demo_dataset_dir({unet!r}))"]
    assert Path(_run(demo, work, environment).strip()) == work / "datasets" / "demo_ct"  # not inside the package

    _run(["pipeline-demo", "--out", "data", "--num_cases", "6", "--size", "64", "--seed", "1"], work, environment)
    _run(
        [*BUNDLE, "training", "--config_file", f"{unet}/train.json", "--dataset_dir", "data", *TRAINING],
        work,
        environment,
    )
    assert (work / "outputs" / "unet" / "latest" / "models" / "model.pt").is_file()

    image = str(sorted((work / "data" / "images").iterdir())[0])
    inference = [*BUNDLE, "inference", "--config_file", f"{unet}/inference.json", "--input", image, "--device", "cpu"]
    _run(inference, work, environment, status=(0, 3))  # 3: written, but flagged (a 1-epoch model may be)
    summary = json.loads((work / "outputs" / "unet" / "inference" / "summary.json").read_text())
    assert [record["status"] for record in summary["inputs"]] in (["ok"], ["flagged"])
    assert (work / "outputs" / "unet" / "inference" / "report.html").is_file()

    api = f"from pipeline import Segmenter; print(Segmenter.from_run('outputs/unet/latest').predict({image!r}).shape)"
    assert _run(["python", "-c", api], work, environment).strip() == "(64, 64)"

    evaluate = [*BUNDLE, "evaluating", "--config_file", f"{unet}/evaluate.json", "--dataset_dir", "data"]
    _run([*evaluate, "--device", "cpu"], work, environment)
    _run(["pipeline-export", "outputs/unet/latest", "--formats", "torchscript"], work, environment)
    assert (work / "outputs" / "unet" / "latest" / "models" / "model.ts").is_file()
    # the export extra is not installed: one line naming its packages (no clone to `pip install -e` here)
    onnx = subprocess.run(
        ["pipeline-export", "outputs/unet/latest", "--formats", "onnx"], cwd=work, env=environment, capture_output=True
    )
    hint = "error: ONNX export needs onnx, which is not installed: pip install 'onnx<2,>=1.16' 'onnxruntime<2,>=1.17'"
    assert onnx.returncode == 1 and onnx.stderr.decode().strip() == hint, onnx.stderr.decode()[-2000:]

    _run(["pipeline-package", "outputs/unet/latest", "--out", "unet_demo"], work, environment)
    assert (work / "unet_demo.zip").is_file()
    assert "Apache License" in (work / "unet_demo" / "LICENSE").read_text()  # from the wheel's metadata
    elsewhere, packaged = tmp_path / "elsewhere", work / "unet_demo"
    elsewhere.mkdir()
    config = ["--bundle_root", str(packaged), "--config_file", f"{packaged}/configs/inference.json"]
    _run([*BUNDLE, *config, "--input", image], elsewhere, environment, status=(0, 3))  # MONAI's default run id
    assert (elsewhere / "outputs" / "unet" / "inference" / "summary.json").is_file()
