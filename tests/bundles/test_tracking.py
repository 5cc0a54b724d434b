"""``--tracking mlflow``: a training run read back through MLflow's API, and a clear stop without MLflow."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.demo import write_demo_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("Doe^Jane"), num_cases=4, size=64, val_fraction=0.5, seed=9)


def test_mlflow_run_is_read_back(dataset, tmp_path, monkeypatch, run_bundle):
    mlflow = pytest.importorskip("mlflow", reason="the tracking extra: pip install -e '.[tracking]'")
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    run_bundle("train", tracking="mlflow", dataset_dir=str(dataset), output_dir=str(tmp_path / "out"))
    run_dir = (tmp_path / "out" / "latest").resolve()
    assert (run_dir / "mlruns.db").is_file()  # the store is in the run folder

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("unet")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
    params = run.data.params
    assert params["recipe"] == "default" and params["epochs"] == "1" and params["model"] == "unet"
    assert params["settings.spatial_size"] == "[64, 64]" and params["settings.segment.label"] == "Lung"
    assert params["data.pairs"] == "4"
    assert "Doe" not in " ".join(params.values())  # no path in the parameters
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_iou")] == [1]
    assert client.get_metric_history(run.info.run_id, "train_loss")
    with (run_dir / "metrics.csv").open() as f:
        rates = [float(row["lr"]) for row in csv.DictReader(f)]
    learning_rate = client.get_metric_history(run.info.run_id, "learning_rate")
    assert [m.step for m in learning_rate] == [1] and [m.value for m in learning_rate] == pytest.approx(rates)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    model = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"curves.png", "metrics.csv", "config.json"} <= artifacts
    assert model == {"model/model.pt", "model/model.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_tracking_without_mlflow_says_how_to_install(dataset, tmp_path):
    """The real command in a process where ``import mlflow`` fails, as on an install without the extra."""
    script = textwrap.dedent(
        f"""
        import runpy, sys
        sys.modules["mlflow"] = None  # import mlflow raises ImportError, as when it is not installed
        sys.argv = ["monai.bundle", "run", "training", "--config_file", {str(REPO / "bundles/unet/train.json")!r},
                    "--dataset_dir", {str(dataset)!r}, "--output_dir", {str(tmp_path / "out")!r}, "--epochs", "1",
                    "--spatial_size", "[64,64]", "--num_workers", "0", "--tracking", "mlflow"]
        runpy.run_module("monai.bundle", run_name="__main__")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode != 0
    expected = 'error: --tracking mlflow needs mlflow, which is not installed: pip install -e ".[tracking]"'
    assert expected in result.stdout + result.stderr
