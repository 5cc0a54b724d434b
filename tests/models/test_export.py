"""TorchScript and ONNX exports of every bundle's network: same logits as PyTorch, same masks through inference, for
one structure and for several."""

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
from pipeline.models.export import CHANNEL_DEF, OPSET, export_onnx, export_torchscript, main, max_difference
from pipeline.models.weights import FORMATS, ExportedNetwork

onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export needs the export extra: pip install -e .[export]")

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
    channels = network(inputs[0]).shape[1]  # the default data's three structures and the background: 4
    assert channels == 4 and exported(inputs[1]).shape == (2, channels, size + 32, size + 64)


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


def _infer(run_bundle, weights: Path, images: Path, out: Path, pattern: str = "*mask*.png") -> dict[str, np.ndarray]:
    """The masks inference writes with ``weights``, in float32: exports run in the precision they were exported in,
    so the weights file runs without the bfloat16 autocast that ``--amp auto`` gives it on a CPU with native bf16."""
    run_bundle("inference", input=str(images), checkpoint=str(weights), output_dir=str(out), amp=False)
    masks = sorted(out.rglob(pattern))
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


def test_several_structures_export_with_parity_and_named_channels(structures_run, tmp_path, run_bundle):
    """A 3-structure model (4 softmax channels): the exports' logits and the label maps inference writes from them
    match ``model.pt``'s, and each export names its channels."""
    run, images = structures_run
    assert main([str(run)]) == 0
    models = run / "models"
    report = json.loads((models / "export.json").read_text())
    channels = {"0": "background", "1": "Liver", "2": "Spleen", "3": "Kidney"}
    assert report["out_channels"] == 4 and report["channel_def"] == channels
    assert all(r["max_abs_logit_difference"] <= TOLERANCE for r in report["exports"].values())

    session = onnxruntime.InferenceSession(str(models / "model.onnx"), providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map[CHANNEL_DEF]) == channels
    extra = {f"{CHANNEL_DEF}.json": ""}
    torch.jit.load(str(models / "model.ts"), _extra_files=extra)
    assert json.loads(extra[f"{CHANNEL_DEF}.json"]) == channels
    assert ExportedNetwork(models / "model.onnx")(torch.zeros(2, 1, 96, 64)).shape == (2, 4, 96, 64)

    labels = {
        name: _infer(run_bundle, models / name, images, tmp_path / name, pattern="*_labels.png")
        for name in ("model.pt", "model.ts", "model.onnx")
    }
    reference = labels["model.pt"]
    assert len(reference) == 4
    values = set(np.unique(np.stack(list(reference.values())))) - {0}
    assert values <= {1, 2, 5} and len(values) >= 2  # label maps in the dataset's values, not all one structure
    for name in ("model.ts", "model.onnx"):
        assert labels[name].keys() == reference.keys()
        for key, label_map in labels[name].items():
            assert np.array_equal(label_map, reference[key]), (name, key)


_WITHOUT = """
import sys
sys.modules[sys.argv[1]] = None  # as if the package were not installed
import torch
from torch import nn
from pipeline.errors import root_cause
from pipeline.models.export import export_onnx
from pipeline.models.weights import ExportedNetwork
try:
    if sys.argv[1] == "onnx":
        export_onnx(nn.Conv2d(1, 1, 3, padding=1), sys.argv[2], torch.zeros(1, 1, 32, 32))
    else:
        ExportedNetwork(sys.argv[2])
except ImportError as e:
    print(str(root_cause(e)))  # what the command prints
"""


@pytest.mark.parametrize(
    "module, needed_for",
    [("onnx", "ONNX export"), ("onnxruntime", "running model.onnx")],
)
def test_a_missing_extra_names_what_to_install(tmp_path, module, needed_for):
    """Without ``onnx`` or ``onnxruntime`` (the ``export`` extra), export and inference on a ``.onnx`` model end in
    one line that names the extra, not in ``ModuleNotFoundError``."""
    target = tmp_path / "model.onnx"
    if module == "onnxruntime":
        export_onnx(torch.nn.Conv2d(1, 1, 3, padding=1), target, torch.zeros(1, 1, 32, 32))
    result = subprocess.run([sys.executable, "-c", _WITHOUT, module, str(target)], capture_output=True, text=True)
    expected = f'{needed_for} needs {module}, which is not installed: pip install -e ".[export]" in the clone'
    assert result.stdout.strip() == expected, (result.stdout, result.stderr[-2000:])


def test_installed_from_a_wheel_the_hint_names_the_extras_packages(monkeypatch):
    """A wheel user has no clone to `pip install -e` and the distribution is not on the index: the hint names the
    extra's packages, as the installed distribution's metadata lists them (pyproject.toml's one source)."""
    import pipeline.bundle
    from pipeline.errors import install_hint

    assert install_hint("export") == 'pip install -e ".[export]" in the clone'
    monkeypatch.setattr(pipeline.bundle, "PACKAGED_BUNDLES_DIR", pipeline.bundle.BUNDLES_DIR)  # as in a wheel
    assert install_hint("export") == "pip install 'onnx<2,>=1.16' 'onnxruntime<2,>=1.17'"
    assert install_hint("tracking") == "pip install 'mlflow<4,>=3.13'"
