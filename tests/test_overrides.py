"""The bundle command refuses what it does not understand: unknown overrides (with the closest ids), devices this
machine lacks, and answers ``--help`` with the config's ids; each before anything is read or written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline import Segmenter
from pipeline.bundle import check_device
from pipeline.overrides import UnknownOverrideError, check_overrides, command_line_overrides, help_text, unknown_ids

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "binary_model_964005e"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["run", "training", "--epochs", "3"], {"epochs": "3"}),
        (["run", "--run_id=training", "--epochs=3"], {"run_id": "training", "epochs": "3"}),
        (["run", "training", "--resume", "--epochs", "2"], {"resume": True, "epochs": "2"}),
        (["run", "training", "--learning_rate", "-1"], {"learning_rate": "-1"}),
        (["run", "training", "--window", "[-1000,400]", "--help"], {"window": "[-1000,400]", "help": True}),
        (["run", "training", "--network_def#channels", "[4,8]"], {"network_def#channels": "[4,8]"}),
        (["run", "training", "-epoch", "3", "--spatial-size", "[64,64]"], {"epoch": "3", "spatial_size": "[64,64]"}),
        (["run", "training", "-h"], {"h": True}),
        (
            ["run", "training", "--window", "-1000", "--learning_rate", "-1e-3"],
            {"window": "-1000", "learning_rate": "-1e-3"},
        ),
    ],
)
def test_the_command_line_is_read_as_fire_reads_it(argv, expected):
    assert command_line_overrides(argv) == expected


@pytest.mark.parametrize(
    "names, expected",
    [
        (["epochs", "network_def#channels", "validate::inferer"], []),
        (["epoch"], ["--epoch (did you mean --epochs?)"]),
        (["threshhold"], ["--threshhold (did you mean --threshold?)"]),
        (["spatial_sise", "zzz"], ["--spatial_sise (did you mean --spatial_size?)", "--zzz"]),
        (["epoch#x"], ["--epoch#x (did you mean --epochs?)"]),
    ],
)
def test_unknown_ids_name_the_closest(names, expected):
    ids = ["epochs", "threshold", "network_def", "validate", "spatial_size"]
    assert unknown_ids(names, ids) == expected


def test_outside_the_bundle_command_nothing_is_checked():
    check_overrides(["pytest", "--epoch", "3", "--help"])  # not python -m monai.bundle: returns


def test_help_lists_the_user_facing_ids_with_defaults_and_meanings():
    config = {"epochs": 10, "spatial_size": "$@recipes['x']", "network_def": {"_target_": "monai.UNet"}, "runner": 1}
    text = help_text(config, ["train.json"])
    assert text.startswith("usage: python -m monai.bundle run")
    assert "  --epochs  (default: 10)\n      Maximum epochs" in text
    assert "--spatial_size  (default: computed: @recipes['x'])" in text and "made by UNet" in text
    assert "--runner" not in text  # internal wiring is not listed


def _bundle(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    config = str(REPO / "bundles" / "unet" / "train.json")
    command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", config, *args]
    command += ["--output_dir", str(tmp_path / "out"), "--dataset_dir", str(tmp_path / "data")]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args, rc, message",
    [
        (["--epoch", "3", "--threshhold", "0.3"], 1, "error: --epoch (did you mean --epochs?), --threshhold (did you"),
        (["--help"], 0, "  --epochs  (default: computed:"),
        (["--device", "gpu"], 1, "error: --device 'gpu' is not a device: use cpu, cuda or cuda:<index>"),
        (["--device", "cuda:99"], 1, "error: --device cuda:99"),
    ],
    ids=["typos", "help", "no such device", "no such cuda device"],
)
def test_the_bundle_command_refuses_before_anything_is_written(tmp_path, args, rc, message):
    result = _bundle(tmp_path, *args)
    assert result.returncode == rc, result.stderr[-2000:]
    assert message in (result.stdout if rc == 0 else result.stderr), (result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no output folder, no demo data, no error log


def test_segmenter_refuses_an_unknown_override_and_a_missing_device():
    small_unet = {"network_def#channels": [4, 8, 16, 32, 64]}
    with pytest.raises(UnknownOverrideError, match=r"--flip_ta \(did you mean --flip_tta\?\)"):
        Segmenter(FIXTURE / "model.pt", device="cpu", flip_ta=True, **small_unet)
    with pytest.raises(ValueError, match="--device 'tpu' is not a device"):
        Segmenter(FIXTURE / "model.pt", device="tpu", **small_unet)


@pytest.mark.parametrize(
    "value, message",
    [
        ("gpu", "is not a device"),
        ("cuda:99", "cuda:99"),
        ("meta", "runs on cpu or cuda"),
    ],
)
def test_check_device(value, message):
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=message):
        check_device(value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_one_line():
    with pytest.raises(ValueError, match="this machine has no CUDA device: use --device cpu"):
        check_device("cuda")
