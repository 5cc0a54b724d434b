"""Commands stopped half-way (Ctrl-C, or SIGTERM from a scheduler) say so and leave what can be used: an inference
writes ``summary.json`` with ``"interrupted": true`` and a record for exactly the outputs that exist; a training run
keeps a complete checkpoint that ``--resume true`` continues. Each ends in one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "data" / "binary_model_964005e"
COUNT = 2000


def _as_from_a_shell() -> None:
    """Start the command with Ctrl-C's default handling, as a terminal does: a test runner's worker may ignore
    SIGINT, and a child inherits that (Python then never turns Ctrl-C into KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_an_interrupted_run_reports_exactly_what_it_wrote(tmp_path, stop):
    images = tmp_path / "in"
    images.mkdir()
    hu = tifffile.imread(FIXTURE / "images" / "case_0002.tif")
    for k in range(COUNT):  # enough that the run is still going when the signal lands, even on a loaded machine
        tifffile.imwrite(images / f"case_{k:04d}.tif", np.roll(hu, k, axis=1))
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "monai.bundle", "run", "inference",
        "--config_file", str(REPO / "bundles" / "unet" / "inference.json"),
        "--checkpoint", str(FIXTURE / "model.pt"), "--network_def#channels", "[4,8,16,32,64]",
        "--input", str(images), "--output_dir", str(out), "--device", "cpu", "--batch_size", "8",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_shell
    )
    deadline = time.monotonic() + 240
    while not list((out / "images").glob("*_mask.png")) if (out / "images").is_dir() else True:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0, stderr[-3000:]
    assert "interrupted: " in stderr and "Traceback" not in stderr, stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and 0 < len(summary["inputs"]) < COUNT
    assert summary["num_not_run"] == COUNT - len(summary["inputs"])
    recorded = {name for record in summary["inputs"] for name in record.get("outputs", [])}
    on_disk = {p.relative_to(out).as_posix() for p in (out / "images").iterdir()}
    assert recorded == on_disk  # no output without its record, no record without its output
    assert not list(out.rglob(".tmp-*"))


@pytest.mark.slow
def test_training_stopped_by_sigterm_after_an_epoch_resumes(tmp_path):
    """SIGTERM (a scheduler's stop) as soon as the first epoch's training state is saved: the run ends as
    ``interrupted`` in one line, keeps a complete checkpoint, and ``--resume true`` finishes it in the same folder."""
    from pipeline.demo import write_demo_dataset

    data = write_demo_dataset(tmp_path / "data", num_cases=6, size=64, val_fraction=0.5, seed=3, label_maps=True)
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", str(REPO / "bundles" / "unet" / "train.json"), "--dataset_dir", str(data),
        "--output_dir", str(tmp_path / "out"), "--epochs", "40", "--spatial_size", "[64,64]", "--batch_size", "2",
        "--num_workers", "0", "--device", "cpu", "--network_def#channels", "[4,8,16,32,64]",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "out").glob("runs/*/checkpoint.pt")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0 and "interrupted: terminated (SIGTERM)" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr
    (run,) = (tmp_path / "out" / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_run"] >= 1
    resumed = subprocess.run(
        [*command, "--resume", "true", "--epochs", str(summary["epochs_run"] + 1)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [p.name for p in (tmp_path / "out" / "runs").iterdir()] == [run.name]
    after = json.loads((run / "summary.json").read_text())
    assert after["status"] == "finished" and after["epochs_run"] == summary["epochs_run"] + 1
