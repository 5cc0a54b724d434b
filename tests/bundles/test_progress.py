"""What a training run shows as it goes: progress lines in a log, curves.png, validation pictures in TensorBoard."""

from __future__ import annotations

import csv
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pipeline.demo import write_demo_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("progress"), num_cases=6, size=64, val_fraction=0.34, seed=8)


def test_log_file_gets_progress_lines_and_no_engine_chatter(dataset, tmp_path):
    """Output to a file (not a terminal): progress lines within the epoch, one line per epoch, nothing from ignite."""
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", str(REPO / "bundles" / "unet" / "train.json"),
        "--dataset_dir", str(dataset), "--output_dir", str(tmp_path / "out"), "--epochs", "2", "--batch_size", "1",
        "--spatial_size", "[64,64]", "--num_workers", "0", "--train#handlers#5#progress_interval", "0",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    progress = [line for line in lines if "images/s" in line and "left in this epoch" in line]
    assert any("epoch 1/2  iteration 1/4  loss" in line for line in progress), result.stdout
    assert len(progress) == 8  # every iteration of both epochs, with the interval at 0
    assert sum(bool(re.search(r"pipeline.training: epoch \d/2  loss \S+  val_iou", line)) for line in lines) == 2
    assert not [line for line in lines if "ignite.engine" in line]
    assert "Loading dataset" not in result.stdout + result.stderr  # no progress bar into a file

    run = tmp_path / "out" / "latest"
    with Image.open(run / "curves.png") as curves:
        assert curves.format == "PNG" and curves.width > 500
    events = EventAccumulator(str(run / "logs"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()["images"]
    assert sorted(tags) == ["validation/0", "validation/1"]  # the two validation cases
    steps = [event.step for event in events.Images("validation/0")]
    assert steps == [1, 2]  # one picture per epoch
    picture = events.Images("validation/0")[0]
    assert picture.width == 3 * picture.height  # image | ground truth | prediction
    with (run / "metrics.csv").open() as f:  # the learning rate curve: each epoch's, as metrics.csv reports it
        rates = [float(row["lr"]) for row in csv.DictReader(f)]
    curve = events.Scalars("learning_rate")
    assert [e.step for e in curve] == [1, 2] and [e.value for e in curve] == pytest.approx(rates, rel=1e-6)


def test_engine_log_switch_brings_ignite_lines_back(dataset, tmp_path, caplog, bundle_workflow):
    workflow = bundle_workflow("train", dataset_dir=str(dataset), output_dir=str(tmp_path / "out"), engine_log=True)
    with caplog.at_level(logging.INFO):
        workflow.initialize()
        workflow.run()
    assert any(r.name.startswith("ignite.engine") and "Epoch[1] Complete" in r.getMessage() for r in caplog.records)
    logging.getLogger("ignite.engine").setLevel(logging.WARNING)
