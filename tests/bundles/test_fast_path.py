"""Speed settings (bf16 autocast, channels-last, cuDNN benchmark, compile, device cache): what ``auto`` means on the
CPU, and each can be switched on or off from the command line. bf16 autocast runs in the inferers
(:mod:`pipeline.inference.autocast`), so that it works on the CPU, where MONAI's engines do not autocast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from pipeline.bundle import gpu_flag
from pipeline.demo import write_demo_dataset
from pipeline.inference import autocast

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "value, device, expected",
    [
        ("auto", "cuda:0", True),
        ("auto", torch.device("cuda", 1), True),
        ("auto", "cpu", False),
        ("auto", torch.device("cpu"), False),
        ("true", "cpu", True),
        (False, "cuda:0", False),
        ("off", "cuda:0", False),
    ],
)
def test_auto_means_cuda(value, device, expected):
    assert gpu_flag(value, "amp", device) is expected


def test_a_bad_value_is_named():
    with pytest.raises(ValueError, match="--channels_last must be true or false, got 'maybe'"):
        gpu_flag("maybe", "channels_last", "cuda:0")


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("kind", ["train", "evaluate", "inference"])
def test_cpu_defaults(kind, native, tmp_path, monkeypatch):
    """On the CPU ``auto`` means bf16 autocast where the CPU runs it natively, in the inferers (MONAI's engines keep
    ``amp`` off: they would autocast CUDA only), and channels-last weights (and training batches) everywhere."""
    monkeypatch.setattr(autocast, "native_bf16", lambda device: native)
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "unet" / f"{kind}.json"))
    data = write_demo_dataset(tmp_path / "data", num_cases=4, size=64, val_fraction=0.5, label_maps=True)
    parser.update({"device": "cpu", "dataset_dir": str(data), "output_dir": str(tmp_path / "out")})
    if kind != "train":  # untrained weights to load
        torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "model.pt")
        parser["checkpoint"] = str(tmp_path / "model.pt")
    assert parser.get_parsed_content("use_amp") is native
    assert parser.get_parsed_content("use_channels_last") is True
    assert parser.get_parsed_content("validate#inferer").amp is native
    if kind == "train":
        trainer = parser.get_parsed_content("train#trainer")
        assert trainer.non_blocking is True and trainer.to_kwargs == {"memory_format": torch.channels_last}
        assert trainer.inferer.amp is native
        engines = [trainer, parser.get_parsed_content("validate#evaluator")]
    elif kind == "evaluate":
        engines = [parser.get_parsed_content("evaluator")]
    else:
        engines = []
        conv = next(m for m in parser.get_parsed_content("network").modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(engine.amp is False for engine in engines)


def test_bf16_on_the_cpu_trains_and_infers(tmp_path, bundle_workflow):
    """Forced on (whatever the CPU): a training run completes with float32 weights, and inference writes masks."""
    dataset = write_demo_dataset(tmp_path / "data", num_cases=4, size=64, val_fraction=0.5, seed=12)
    out = tmp_path / "out"
    workflow = bundle_workflow("train", dataset_dir=str(dataset), output_dir=str(out), amp=True, epochs=2)
    workflow.initialize()
    workflow.run()
    weights = torch.load(out / "latest" / "models" / "model.pt", weights_only=True)
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())
    assert all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())
    runner = bundle_workflow(
        "inference",
        input=str(dataset / "images"),
        train_output_dir=str(out),
        output_dir=str(out / "inference"),
        amp=True,
    )
    runner.initialize()
    runner.run()
    summary = json.loads((out / "inference" / "summary.json").read_text())
    assert summary["num_failed"] == 0 and summary["num_ok"] + summary["num_flagged"] == 4  # flagged: barely trained


def test_channels_last_on_cpu_trains(tmp_path, bundle_workflow):
    """The weights and the batches are channels-last, and a run completes (cuDNN benchmark forced on as well)."""
    dataset = write_demo_dataset(tmp_path / "data", num_cases=4, size=64, val_fraction=0.5, seed=12)
    workflow = bundle_workflow(
        "train", dataset_dir=str(dataset), output_dir=str(tmp_path / "out"), channels_last=True, cudnn_benchmark=True
    )
    workflow.initialize()
    assert torch.backends.cudnn.benchmark is True
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.to_kwargs == {"memory_format": torch.channels_last}
    convs = [m for m in trainer.network.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    workflow.run()
    torch.backends.cudnn.benchmark = False
    assert (tmp_path / "out" / "latest" / "models" / "model.pt").is_file()


@pytest.mark.parametrize("setting, cached_on_device", [("auto", False), (True, True), (False, False)])
def test_device_cache_switch_on_cpu(setting, cached_on_device):
    """``--cache_on_device`` (auto: CUDA only) moves each training item to the device once, before the cache, so that
    augmentation and batches stay there; on the CPU ``auto`` leaves the transforms as they were."""
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "unet" / "train.json"))
    parser.update({"device": "cpu", "cache_on_device": setting})
    names = [type(t).__name__ for t in parser.get_parsed_content("train#preprocessing").transforms]
    assert ("ToDeviced" in names) is cached_on_device
    if cached_on_device:  # before the cast back to float32, which runs per draw: cached on the device in float16
        assert names.index("ToDeviced") == names.index("CastToTyped") + 1


def test_device_cache_forced_on_cpu_trains(tmp_path, bundle_workflow):
    dataset = write_demo_dataset(tmp_path / "data", num_cases=4, size=64, val_fraction=0.5, seed=12)
    workflow = bundle_workflow(
        "train", dataset_dir=str(dataset), output_dir=str(tmp_path / "out"), cache_on_device=True, cache="memory"
    )
    workflow.initialize()
    workflow.run()
    assert (tmp_path / "out" / "latest" / "models" / "model.pt").is_file()


def test_device_cache_only_with_the_memory_cache():
    """Cache files written from one GPU would load onto that GPU in every process: on disk, items stay on the host."""
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "unet" / "train.json"))
    parser.update({"device": "cpu", "cache_on_device": True, "cache": "disk"})
    names = [type(t).__name__ for t in parser.get_parsed_content("train#preprocessing").transforms]
    assert "ToDeviced" not in names
