"""An inference command stopped half-way (Ctrl-C, or SIGTERM from a scheduler) says so: ``summary.json`` has
``"interrupted": true`` and a record for exactly the outputs that exist, and the command ends in one line."""

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


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_an_interrupted_run_reports_exactly_what_it_wrote(tmp_path, stop):
    images = tmp_path / "in"
    images.mkdir()
    hu = tifffile.imread(FIXTURE / "images" / "case_0002.tif")
    for k in range(400):
        tifffile.imwrite(images / f"case_{k:04d}.tif", np.roll(hu, k, axis=1))
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "monai.bundle", "run", "inference",
        "--config_file", str(REPO / "bundles" / "unet" / "inference.json"),
        "--checkpoint", str(FIXTURE / "model.pt"), "--network_def#channels", "[4,8,16,32,64]",
        "--input", str(images), "--output_dir", str(out), "--device", "cpu", "--batch_size", "8",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((out / "images").glob("*_mask.png")) if (out / "images").is_dir() else True:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0, stderr[-3000:]
    assert "interrupted: " in stderr and "Traceback" not in stderr, stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and 0 < len(summary["inputs"]) < 400
    assert summary["num_not_run"] == 400 - len(summary["inputs"])
    recorded = {name for record in summary["inputs"] for name in record.get("outputs", [])}
    on_disk = {p.relative_to(out).as_posix() for p in (out / "images").iterdir()}
    assert recorded == on_disk  # no output without its record, no record without its output
    assert not list(out.rglob(".tmp-*"))
