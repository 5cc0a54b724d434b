"""``--tracking mlflow``: a training run read back through MLflow's API, its best model loaded back as an MLflow model,
and a clear stop without MLflow."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from pipeline.demo import write_demo_dataset
from pipeline.models import load_state_dict_file
from pipeline.training.tracking import log_mlflow_model

REPO = Path(__file__).resolve().parents[2]
REGISTERED = "lung_unet"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("Doe^Jane"), num_cases=4, size=64, val_fraction=0.5, seed=9)


@pytest.fixture(scope="module")
def tracked(dataset, tmp_path_factory, run_bundle) -> SimpleNamespace:
    """One short training with ``--tracking mlflow`` and a registered model name, in a working directory of its own;
    the run folder, the workflow, the MLflow client on the run's store and the MLflow run."""
    mlflow = pytest.importorskip("mlflow", reason="the tracking extra: pip install -e '.[tracking]'")
    work = tmp_path_factory.mktemp("work")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)  # nothing may land in the working directory
        workflow = run_bundle(
            "train",
            tracking="mlflow",
            dataset_dir=str(dataset),
            output_dir=str(work / "out"),
            registered_model_name=REGISTERED,
        )
    run_dir = (work / "out" / "latest").resolve()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("unet")
    (run,) = client.search_runs([experiment.experiment_id])
    return SimpleNamespace(work=work, run_dir=run_dir, workflow=workflow, client=client, run=run, mlflow=mlflow)


@pytest.fixture
def store(tracked, monkeypatch):
    """MLflow's fluent API (``load_model``) on the run's store, for this test only."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked.client.tracking_uri)
    return tracked.client


def _own_logits(tracked, images: torch.Tensor) -> torch.Tensor:
    """The logits of the run's best model as this project loads it: a fresh network and ``models/model.pt``."""
    network = tracked.workflow.parser.get_parsed_content("network_def", lazy=False)
    network = load_state_dict_file(network, tracked.run_dir / "models" / "model.pt").eval()
    with torch.no_grad():
        return network(images)


def test_mlflow_run_is_read_back(tracked):
    run_dir, client, run = tracked.run_dir, tracked.client, tracked.run
    assert (run_dir / "mlruns.db").is_file()  # the store is in the run folder
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
    weights = {a.path for a in client.list_artifacts(run.info.run_id, "weights")}
    assert {"curves.png", "metrics.csv", "config.json"} <= artifacts
    assert weights == {"weights/model.pt", "weights/model.json"}
    assert sorted(p.name for p in tracked.work.iterdir()) == ["out"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset_dir"] == "<path>" and config["network_def"]["_target_"]  # the wiring is kept


def test_no_path_reaches_mlflow(tracked):
    """The dataset's folder is named like a patient: no artifact, model file or parameter of the run holds it."""
    texts = [p for p in (tracked.run_dir / "mlruns").rglob("*") if p.is_file() and p.suffix != ".pt"]
    assert any(p.name == "config.json" for p in texts) and any(p.name == "MLmodel" for p in texts)
    for path in texts:
        assert b"Doe" not in path.read_bytes(), path.relative_to(tracked.run_dir)


def test_best_model_loads_from_mlflow_with_the_same_logits(tracked, store):
    """``mlflow.pytorch.load_model`` gives the logits of ``models/model.pt`` loaded as the project loads it, for any
    batch size, from the run and from the registry."""
    images = torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    expected = _own_logits(tracked, images)
    for uri in (f"runs:/{tracked.run.info.run_id}/model", f"models:/{REGISTERED}/1"):
        model = tracked.mlflow.pytorch.load_model(uri)
        with torch.no_grad():
            logits = model(images)
        assert logits.shape == expected.shape == (3, 1, 64, 64)
        difference = (logits - expected).abs().max().item()
        print(f"{uri}: max abs difference {difference:.3g}")
        assert torch.allclose(logits, expected, atol=1e-5), (uri, difference)


def test_mlflow_model_has_signature_example_and_card(tracked, store):
    mlflow = tracked.mlflow
    uri = f"runs:/{tracked.run.info.run_id}/model"
    info = mlflow.models.get_model_info(uri)
    (inputs,) = info.signature.inputs.inputs
    (outputs,) = info.signature.outputs.inputs
    assert (inputs.shape, str(inputs.type)) == ((-1, 1, 64, 64), "float32")  # (B, in_channels, H, W)
    assert outputs.shape == (-1, 1, 64, 64)
    assert info.flavors["pytorch"]["extra_files"] == [{"path": "extra_files/model.json"}]
    assert "data/model.pt2" in {a.path for a in store.list_logged_model_artifacts(info.model_id, "data")}
    folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tracked.work.parent / "downloaded")))
    card = json.loads((folder / "extra_files" / "model.json").read_text())
    assert card == json.loads((tracked.run_dir / "models" / "model.json").read_text())
    example = json.loads((folder / "input_example.json").read_text())
    assert torch.tensor(example).shape == (2, 1, 64, 64)
    assert (folder / "requirements.txt").read_text().split() == [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
    ]


def test_registered_name_lands_in_the_registry(tracked):
    client, run_id = tracked.client, tracked.run.info.run_id
    assert [m.name for m in client.search_registered_models()] == [REGISTERED]
    (version,) = client.search_model_versions(f"name = '{REGISTERED}'")
    assert (int(version.version), version.run_id, version.status) == (1, run_id, "READY")
    (logged,) = client.search_logged_models([tracked.run.info.experiment_id])
    assert (logged.name, logged.source_run_id, version.source) == ("model", run_id, f"models:/{logged.model_id}")


def test_mlflow_model_is_the_weights_file_not_the_network(tmp_path, monkeypatch):
    """:func:`log_mlflow_model` logs the weights it is given (the best, not the last), leaves the trained network and
    the process's MLflow settings as they were, and registers nothing without a name."""
    mlflow = pytest.importorskip("mlflow", reason="the tracking extra: pip install -e '.[tracking]'")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    best, last = torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Conv2d(2, 3, 3, padding=1)
    torch.save(best.state_dict(), tmp_path / "model.pt")
    before = {k: v.clone() for k, v in last.state_dict().items()}
    fluent_uri = mlflow.get_tracking_uri()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'store.db'}")
    run = client.create_run(client.create_experiment("e", artifact_location=str(tmp_path / "artifacts")))
    info = log_mlflow_model(client, run.info.run_id, last, tmp_path / "model.pt", in_channels=2, spatial_size=[8, 8])

    assert info.registered_model_version is None and client.search_registered_models() == []
    assert all(torch.equal(v, before[k]) for k, v in last.state_dict().items())  # the network is left as it was
    assert "MLFLOW_TRACKING_URI" not in os.environ and mlflow.get_tracking_uri() == fluent_uri
    images = torch.randn(1, 2, 8, 8)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    with torch.no_grad():
        logits = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")(images)
        assert torch.allclose(logits, best(images), atol=1e-6) and not torch.allclose(logits, last(images), atol=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts", "model.pt", "store.db"]


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


def test_mlflow_sends_no_telemetry(tmp_path):
    """MLflow's usage telemetry is on by default (off under pytest and CI, which this child process is not): importing
    the package turns it off, also when ``monai.bundle`` has imported MLflow first, as ``python -m monai.bundle`` does.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "CI", "MLFLOW_DISABLE_TELEMETRY")}
    env |= {"HOME": str(tmp_path), "DO_NOT_TRACK": "false"}
    check = (
        "import monai.bundle, mlflow.telemetry as t; before = t.get_telemetry_client() is not None; import pipeline; "
        "from mlflow.telemetry.utils import is_telemetry_disabled; "
        "print(before, t.get_telemetry_client() is None, is_telemetry_disabled())"
    )
    result = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["True", "True", "True"], result.stdout + result.stderr[-2000:]
