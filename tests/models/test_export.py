"""TorchScript and ONNX exports of every bundle's network: same logits as PyTorch, same masks through inference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export
from PIL import Image

from pipeline.demo import write_demo_dataset
from pipeline.models.export import OPSET, export_onnx, export_torchscript, main, max_difference
from pipeline.models.weights import FORMATS, ExportedNetwork

pytest.importorskip("onnxruntime", reason="ONNX export needs the export extra: pip install -e '.[export]'")

REPO = Path(__file__).resolve().parents[2]
SIZES = {"cenet": 192, "aspp": 64, "inception_unet": 64, "unet": 64}
TOLERANCE = 1e-3  # the bound on the largest absolute fp32 logit difference


def _network(bundle: str) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / bundle / "train.json"))
    torch.manual_seed(0)
    return parser.get_parsed_content("network_def").eval()


@pytest.mark.parametrize("bundle", list(SIZES))
@pytest.mark.parametrize("kind", list(FORMATS))
def test_export_gives_the_same_logits(bundle, kind, tmp_path):
    """Batch 1 at the trained size and batch 2 at another size: the ONNX axes are dynamic."""
    network, size = _network(bundle), SIZES[bundle]
    generator = torch.Generator().manual_seed(1)
    inputs = [
        torch.randn(1, 1, size, size, generator=generator),
        torch.randn(2, 1, size + 32, size + 64, generator=generator),
    ]
    path = tmp_path / f"model{FORMATS[kind]}"
    (export_torchscript(network, path) if kind == "torchscript" else export_onnx(network, path, inputs[0]))
    exported = ExportedNetwork(path)
    assert max_difference(network, exported, inputs) <= TOLERANCE
    assert exported(inputs[1]).shape == (2, 1, size + 32, size + 64)


def test_monai_ckpt_export_scripts_every_bundle(tmp_path, monkeypatch):
    """MONAI's own export command, as the export guide gives it, for all four bundles: cenet's (the guide's example)
    as the command line, the others as the same function called in this process (a process costs MONAI's import)."""
    monkeypatch.chdir(tmp_path)
    for bundle in SIZES:
        weights = tmp_path / f"{bundle}.pt"
        network = _network(bundle)
        torch.save(network.state_dict(), weights)
        arguments = {
            "filepath": str(tmp_path / f"{bundle}.ts"), "ckpt_file": str(weights), "checkpoint": str(weights),
            "meta_file": str(REPO / "bundles" / bundle / "metadata.json"),
            "config_file": str(REPO / "bundles" / bundle / "inference.json"),
        }  # fmt: skip
        if bundle == "cenet":
            command = [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def"]
            command += [word for name, value in arguments.items() for word in (f"--{name}", value)]
            result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr[-2000:]
        else:
            ckpt_export("network_def", **arguments)
        scripted = torch.jit.load(str(tmp_path / f"{bundle}.ts"))
        x = torch.randn(1, 1, SIZES[bundle], SIZES[bundle])
        with torch.no_grad():
            assert float((scripted(x) - network(x)).abs().max()) <= TOLERANCE, bundle


def test_unreadable_exports_are_named(tmp_path):
    for name in ("model.ts", "model.onnx"):
        (tmp_path / name).write_bytes(b"not a model")
        with pytest.raises(ValueError, match=name):
            ExportedNetwork(tmp_path / name)
    with pytest.raises(ValueError, match=r"ends in \.ts or \.onnx"):
        (tmp_path / "model.bin").write_bytes(b"")
        ExportedNetwork(tmp_path / "model.bin")


def _infer(run_bundle, weights: Path, images: Path, out: Path) -> dict[str, np.ndarray]:
    run_bundle("inference", input=str(images), checkpoint=str(weights), output_dir=str(out))
    masks = sorted(out.rglob("*mask*.png"))
    assert masks, sorted(p.name for p in out.rglob("*"))
    return {p.relative_to(out).as_posix(): np.asarray(Image.open(p)) for p in masks}


def test_inference_from_exports_gives_the_same_masks(tmp_path, monkeypatch, run_bundle):
    """Train 2 epochs, export the run (``pipeline-export``), and segment the same images with all three files."""
    monkeypatch.chdir(tmp_path)
    dataset = write_demo_dataset(tmp_path / "data", num_cases=4, size=64, val_fraction=0.5, seed=6)
    run_bundle("train", dataset_dir=str(dataset), output_dir=str(tmp_path / "out"), epochs=2)
    run = tmp_path / "out" / "latest"
    assert main([str(run)]) == 0
    report = json.loads((run / "models" / "export.json").read_text())
    assert report["exports"]["onnx"]["opset"] == OPSET
    assert all(r["max_abs_logit_difference"] <= TOLERANCE for r in report["exports"].values())

    masks = {
        name: _infer(run_bundle, run / "models" / name, dataset / "images", tmp_path / name)
        for name in ("model.pt", "model.ts", "model.onnx")
    }
    reference = masks["model.pt"]
    assert len(reference) == 4
    for name in ("model.ts", "model.onnx"):
        assert masks[name].keys() == reference.keys()
        for key, mask in masks[name].items():
            assert np.array_equal(mask, reference[key]), (name, key)
