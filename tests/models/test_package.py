"""A trained run packaged as a MONAI bundle runs away from the repository and gives the repository's masks, for one
structure and for several; its metadata names the output channels; and it passes the checks the model zoo runs:
the metadata schema's required fields, MONAI's inference properties, ``verify_net_in_out`` and ``large_files.yml``."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.apps.utils import HashCheckError, download_url
from monai.bundle import ConfigParser, ConfigWorkflow
from PIL import Image

from pipeline import Segmenter
from pipeline.demo import write_demo_dataset
from pipeline.inference import EXIT_FLAGGED
from pipeline.models.package import main, package_run

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ["cenet", "aspp", "inception_unet", "unet"]

# The model zoo's metadata schema (meta_schema_20240725.json, which metadata.json names) cannot be downloaded at test
# time: its required fields and their JSON types, and those of each tensor in network_data_format.
SCHEMA_REQUIRED = {
    "schema": str, "version": str, "monai_version": str, "pytorch_version": str, "numpy_version": str,
    "required_packages_version": dict, "task": str, "description": str, "authors": str, "copyright": str,
    "network_data_format": dict,
}  # fmt: skip
TENSOR_REQUIRED = {"type": str, "format": str, "num_channels": int, "spatial_shape": list, "dtype": str,
                   "value_range": list}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_bundle) -> tuple[Path, Path]:
    """(run folder, images) of a 2-epoch unet run at 64 x 64 with a window of its own."""
    root = tmp_path_factory.mktemp("package")
    dataset = write_demo_dataset(root / "data", num_cases=4, size=64, val_fraction=0.5, seed=10)
    run_bundle("train", dataset_dir=str(dataset), output_dir=str(root / "out"), window=[-900, 300], epochs=2)
    return root / "out" / "latest", dataset / "images"


def schema_problems(metadata: dict[str, Any]) -> list[str]:
    """What ``metadata`` lacks of the model zoo's schema: a required field missing or of another JSON type, a tensor of
    ``network_data_format`` without one of its required keys, and a version missing from the changelog."""
    problems = [
        f"{k}: missing or not {t.__name__}" for k, t in SCHEMA_REQUIRED.items() if not isinstance(metadata.get(k), t)
    ]
    io = metadata.get("network_data_format") or {}
    for part in ("inputs", "outputs"):
        if not io.get(part):
            problems.append(f"network_data_format#{part}: missing")
        for name, tensor in (io.get(part) or {}).items():
            for key, kind in TENSOR_REQUIRED.items():
                if not isinstance(tensor.get(key), kind) or isinstance(tensor.get(key), bool):
                    problems.append(f"{part}#{name}#{key}: missing or not {kind.__name__}")
            if not all(isinstance(v, (int, float)) for v in tensor.get("value_range", [])):
                problems.append(f"{part}#{name}#value_range: not numbers")
            if not all(isinstance(v, (int, str)) for v in tensor.get("spatial_shape", [])):
                problems.append(f"{part}#{name}#spatial_shape: not integers or expressions")
    if metadata.get("version") not in (metadata.get("changelog") or {}):
        problems.append("version: not in changelog")  # the model zoo's verify_bundle refuses it
    return problems


@pytest.mark.parametrize("bundle", BUNDLES)
def test_repository_metadata_has_the_model_zoo_schema_fields(bundle):
    assert schema_problems(json.loads((REPO / "bundles" / bundle / "metadata.json").read_text())) == []


def test_the_schema_field_check_finds_what_is_missing():
    metadata = json.loads((REPO / "bundles" / "unet" / "metadata.json").read_text())
    del metadata["authors"]
    metadata["required_packages_version"] = ["pillow"]
    metadata["network_data_format"]["inputs"]["image"]["num_channels"] = "1"
    del metadata["network_data_format"]["outputs"]["pred"]["value_range"]
    metadata["version"] = "9.9.9"
    assert schema_problems(metadata) == [
        "required_packages_version: missing or not dict", "authors: missing or not str",
        "inputs#image#num_channels: missing or not int", "outputs#pred#value_range: missing or not list",
        "version: not in changelog",
    ]  # fmt: skip


def _masks(folder: Path, pattern: str = "*_mask.png") -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.rglob(pattern))}


def _run_away(archive: Path, images: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Unzip ``archive`` into a folder of its own, run MONAI's inference command on ``images`` from another, empty
    folder, and return the bundle folder and the inference outputs."""
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "unzipped")
    bundle = tmp_path / "unzipped" / archive.stem
    away = tmp_path / "elsewhere"
    away.mkdir()
    command = [
        sys.executable, "-m", "monai.bundle", "run", "--bundle_root", str(bundle),  # MONAI's default run id, "run"
        "--config_file", str(bundle / "configs" / "inference.json"), "--input", str(images), "--device", "cpu",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=away, capture_output=True, text=True, timeout=300)
    flagged = json.loads((away / "outputs" / "unet" / "inference" / "summary.json").read_text())["num_flagged"]
    assert result.returncode == (EXIT_FLAGGED if flagged else 0), result.stderr[-2000:]  # a 1-epoch model's results
    return bundle, away / "outputs" / "unet" / "inference"


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
    assert {"medical-slice-segmentation", "highdicom", "pytorch-ignite"} <= set(metadata["required_packages_version"])

    bundle, outputs = _run_away(archive, images, tmp_path)
    packaged = _masks(outputs)

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


def test_a_structure_missing_from_the_validation_split_packages(trained, tmp_path):
    """A model card records ``null`` for a structure the validation split lacks (no Dice to compute): the bundle
    packages, its README says why there is no figure, and its metadata keeps the null."""
    run_dir, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    card = json.loads((copy / "models" / "model.json").read_text())
    card["metrics"]["val_dice_heart"] = None
    (copy / "models" / "model.json").write_text(json.dumps(card))
    package_run(copy, tmp_path / "unet_lung", torchscript=False)
    readme = (tmp_path / "unet_lung" / "docs" / "README.md").read_text()
    assert "| dice_heart | n/a (not in the validation split) |" in readme
    metadata = json.loads((tmp_path / "unet_lung" / "configs" / "metadata.json").read_text())
    assert metadata["eval_metrics"]["dice_heart"] is None and "null for a structure" in metadata["eval_metrics_note"]


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
    assert metadata["network_data_format"]["inputs"]["image"]["modality"] == "OT"  # the weights' own, not the bundle's
    assert (
        metadata["image_classes"] == "one channel: OT images scaled to [0, 1] between their 0.5th and 99.5th "
        "intensity percentiles"
    )
    assert schema_problems(metadata) == []
    config = json.loads((folder / "configs" / "inference.json").read_text())
    assert [s["value"] for s in config["structures"]] == [1, 2, 5]  # written in: no datalist needed to run it
    readme = (folder / "docs" / "README.md").read_text()
    assert "| 0 | background | 0 |" in readme and "| 3 | Kidney | 5 |" in readme

    bundle, outputs = _run_away(archive, images, tmp_path)
    packaged = _masks(outputs, "*_labels.png")
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


def _in_empty_folder(folder: Path, *command: str) -> subprocess.CompletedProcess:
    """``command`` run as a user runs it, in a new empty folder ``folder``."""
    folder.mkdir()
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)


def test_packaged_bundle_passes_the_model_zoo_checks(trained, tmp_path, monkeypatch):
    """From an empty folder with only MONAI: its inference properties, ``verify_net_in_out`` and ``large_files.yml``;
    and its metadata has the schema's fields and this model's input."""
    run_dir, images = trained
    package_run(run_dir, tmp_path / "unet_lung")
    bundle = tmp_path / "unet_lung"
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert schema_problems(metadata) == []
    image = metadata["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 1 and image["spatial_shape"] == ["16*n", "16*n"] and image["modality"] == "CT"
    assert metadata["image_classes"].startswith("one channel: CT in Hounsfield units, windowed to [-900, 300]")

    # MONAI's inference properties, from an empty folder (in this process, without the bundle's logging.conf, which
    # would give the test process's root logger a handler on this test's captured stdout)
    (tmp_path / "properties").mkdir()
    monkeypatch.chdir(tmp_path / "properties")
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "inference.json"), meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False, workflow_type="infer", bundle_root=str(bundle), device="cpu",
    )  # fmt: skip
    workflow.initialize()
    assert workflow.check_properties() == [] and len(workflow.dataset) == 0  # as the model zoo checks: no input yet
    workflow = ConfigWorkflow(
        config_file=str(bundle / "configs" / "inference.json"), meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False, workflow_type="infer", bundle_root=str(bundle), device="cpu",
    )  # fmt: skip
    workflow.dataset_dir = str(images)  # MONAI's property, as an application sets it
    workflow.initialize()
    assert workflow.check_properties() == []
    # dataset_dir is the input: the runner segments it, and the dataset is the 4 images it finds there
    assert workflow.evaluator.input == images and len(workflow.dataset.images) == 4

    command = [
        sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def", "--bundle_root", str(bundle),
        "--meta_file", str(bundle / "configs" / "metadata.json"),
        "--config_file", str(bundle / "configs" / "inference.json"), "--device", "cpu",
    ]  # fmt: skip
    result = _in_empty_folder(tmp_path / "verify", *command)
    assert result.returncode == 0 and "verified with no error" in result.stdout + result.stderr, result.stderr[-2000:]

    # the model zoo's large files: read as its CI reads them, and checked by MONAI's download against their hashes
    large = ConfigParser.load_config_file(str(bundle / "large_files.yml"))["large_files"]
    assert [f["path"] for f in large] == ["models/model.pt", "models/model.ts"]
    for entry in large:
        assert entry["hash_type"] == "sha256" and entry["url"] == ""  # the publisher's upload address goes there
        assert entry["hash_val"] == hashlib.sha256((bundle / entry["path"]).read_bytes()).hexdigest()
        download_url(url=entry["url"], filepath=bundle / entry["path"], hash_val=entry["hash_val"], hash_type="sha256")
    with zipfile.ZipFile(tmp_path / "unet_lung.zip") as z:
        assert "unet_lung/large_files.yml" in z.namelist() and "unet_lung/models/model.pt" in z.namelist()


def test_a_tampered_weights_file_fails_the_large_files_hash(trained, tmp_path):
    run_dir, _ = trained
    package_run(run_dir, tmp_path / "unet_lung", torchscript=False)
    bundle = tmp_path / "unet_lung"
    (entry,) = ConfigParser.load_config_file(str(bundle / "large_files.yml"))["large_files"]
    state = torch.load(bundle / "models" / "model.pt", weights_only=True)
    next(iter(state.values())).add_(1.0)
    torch.save(state, bundle / "models" / "model.pt")
    with pytest.raises(HashCheckError, match="hash check"):
        download_url(url=entry["url"], filepath=bundle / entry["path"], hash_val=entry["hash_val"], hash_type="sha256")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("tiny"), num_cases=2, size=64, seed=4)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_repository_inference_configs_have_monai_inference_properties(bundle, tiny_data, tmp_path):
    """MONAI's property check of each repository bundle's inference.json, on untrained weights without a card."""
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "train.json"))
    parser["dataset_dir"] = str(tiny_data)
    weights = tmp_path / "model.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), weights)
    workflow = ConfigWorkflow(
        config_file=str(REPO / "bundles" / bundle / "inference.json"), workflow_type="infer", logging_file=False,
        dataset_dir=str(tiny_data), checkpoint=str(weights), input=str(tiny_data / "images"), device="cpu",
        output_dir=str(tmp_path / "out"),
    )  # fmt: skip
    workflow.initialize()
    assert workflow.check_properties() == []
    assert len(workflow.dataset) == 2 and workflow.evaluator is workflow.parser.get_parsed_content("runner")
