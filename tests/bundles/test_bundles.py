"""Full bundle runs on a handful of tiny generated files, plus the config contracts every bundle must keep."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, verify_net_in_out

from pipeline.demo import write_demo_dataset
from pipeline.errors import root_cause
from pipeline.intake import DatasetCheckError

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ["cenet", "aspp", "inception_unet", "unet"]
# The smallest size each network takes, to keep CPU runs short.
SIZES = {"cenet": 192, "aspp": 64, "inception_unet": 64, "unet": 64}


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(REPO)  # the bundles are run from the repository root, as the README says


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), num_cases=6, size=96, val_fraction=0.34, seed=1)


def _workflow(bundle: str, dataset_dir: Path, output_dir: Path, **override) -> ConfigWorkflow:
    settings = {
        "dataset_dir": str(dataset_dir),
        "output_dir": str(output_dir),
        "epochs": 1,
        "batch_size": 2,
        "spatial_size": [SIZES[bundle]] * 2,
        "device": "cpu",
        "num_workers": 0,
    }
    settings.update(override)
    return ConfigWorkflow(
        config_file=f"bundles/{bundle}/train.json",
        workflow_type="train",
        run_id="training",
        init_id="initialize",
        logging_file=False,
        **settings,
    )


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES)
def test_training_run(bundle, tiny_dataset, tmp_path):
    workflow = _workflow(bundle, tiny_dataset, tmp_path, epochs=2)
    workflow.initialize()
    workflow.run()
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    workflow.finalize()
    # validation metrics are computed at native resolution: the prediction is resized back to the label's grid
    last = evaluator.state.output[-1]
    assert last["pred"].shape == last["label"].shape and last["label"].shape[-2:] == (96, 96)

    run = tmp_path / "latest"  # the run folder of the finished run
    assert run.is_symlink() and [p.name for p in (tmp_path / "runs").iterdir()] == [run.resolve().name]
    models = run / "models"
    assert (models / "model.pt").is_file() and (models / "model_final.pt").is_file()
    network = ConfigParser.load_config_file(f"bundles/{bundle}/metadata.json")  # metadata parses as JSON
    assert "network_data_format" in network
    state = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    workflow.parser.get_parsed_content("network_def").load_state_dict(state)

    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["model"] == bundle and summary["status"] == "finished"
    network = workflow.parser.get_parsed_content("network_def")
    assert summary["num_parameters"] == sum(p.numel() for p in network.parameters()) > 0
    for key in ("val_iou", "val_dice", "val_precision", "val_recall", "val_accuracy", "val_hd95"):
        assert key in summary["last"], key
    assert 0.0 <= summary["last"]["val_dice"] <= 1.0
    assert (run / "metrics.csv").read_text().count("\n") == 3  # header + one row per epoch
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "logs").iterdir())


def test_preflight_stops_before_training(tmp_path):
    data = write_demo_dataset(tmp_path / "data", num_cases=4, size=64, seed=2)
    victim = sorted((data / "masks").iterdir())[0]
    victim.unlink()
    workflow = _workflow("unet", data, tmp_path / "out")
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps errors raised inside config expressions
        workflow.initialize()
    cause = raised.value
    while cause is not None and not isinstance(cause, DatasetCheckError):
        cause = cause.__cause__
    assert cause is not None and victim.name in str(cause)
    assert not (tmp_path / "out" / "latest").exists() and not list((tmp_path / "out").glob("runs/*/models"))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_verify_net_in_out(bundle):
    verify_net_in_out(
        net_id="network_def",
        meta_file=f"bundles/{bundle}/metadata.json",
        config_file=f"bundles/{bundle}/train.json",
        device="cpu",
    )


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundle_files(bundle):
    for name in ("train.json", "metadata.json", "logging.conf", "README.md"):
        assert (REPO / "bundles" / bundle / name).is_file(), name


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ({}, "spatial_size", [192, 192]),
        ({"recipe": "seeds"}, "spatial_size", [448, 448]),
        ({"recipe": "seeds"}, "epochs", 100),
        ({"recipe": "seeds"}, "patience", "15 epochs"),
        ({"recipe": "seeds"}, "learning_rate", 1e-4),
        ({"recipe": "seeds"}, "batch_size", 8),
        ({}, "batch_size", 4),
        ({"recipe": "seeds"}, "lr_schedule", "plateau"),
        ({"recipe": "seeds"}, "output_bias", False),
        ({"recipe": "seeds"}, "extra_augmentation", False),
        ({}, "lr_schedule", "warmup_cosine"),
        ({}, "output_bias", True),
        ({"recipe": "seeds", "epochs": 3}, "epochs", 3),
        ({"learning_rate": 0.01}, "optimizer", 0.01),
        # auto: the demo's grey CT takes the default recipe; colour images the colour one
        ({}, "chosen_recipe", "default"),
        ({}, "colour_augmentation", False),
        ({"in_channels": 3}, "chosen_recipe", "colour"),
        ({"in_channels": 3}, "epochs", 60),
        ({"in_channels": 3}, "colour_augmentation", False),  # measured no better on Kvasir-SEG
        ({"in_channels": 3, "recipe": "default"}, "epochs", 10),
        ({"in_channels": 3, "colour_augmentation": True}, "colour_augmentation", True),
    ],
)
def test_plain_overrides(override, key, expected):
    parser = ConfigParser()
    parser.read_config("bundles/cenet/train.json")
    parser.update(override)
    parser.parse()
    value = parser.get_parsed_content(key)
    if key == "optimizer":
        value = value.param_groups[0]["lr"]
    assert value == expected


@pytest.mark.slow
def test_cli(tiny_dataset, tmp_path):
    """The README's command line, with plain-name overrides."""
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", "bundles/unet/train.json",
        "--dataset_dir", str(tiny_dataset), "--output_dir", str(tmp_path), "--epochs", "1",
        "--spatial_size", "[64,64]", "--batch_size", "2", "--learning_rate", "0.001", "--device", "cpu",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**os.environ}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "epoch 1/1" in output and "val_iou" in output and "checkpoint:" in output
    assert (tmp_path / "latest" / "models" / "model.pt").is_file()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_training_is_deterministic_and_a_second_run_keeps_the_first(tiny_dataset, tmp_path):
    """The same seed on the same data gives the same loss and metrics (split, weights, shuffling, augmentation); run
    twice into one output folder, the second run gets a folder of its own and ``latest`` moves to it."""
    summaries, runs = [], []
    for _ in range(2):
        workflow = _workflow("unet", tiny_dataset, tmp_path, epochs=2)
        workflow.initialize()
        workflow.run()
        workflow.finalize()
        runs.append((tmp_path / "latest").resolve())
        summaries.append(json.loads((runs[-1] / "summary.json").read_text()))
        if len(runs) == 1:
            first = _files(runs[0])
    assert runs[0] != runs[1] and sorted(p.name for p in (tmp_path / "runs").iterdir()) == [runs[0].name, runs[1].name]
    assert _files(runs[0]) == first  # nothing of the first run was replaced
    for key in ("loss", "val_iou", "val_dice"):
        assert summaries[0]["last"][key] == pytest.approx(summaries[1]["last"][key], rel=1e-5, abs=1e-6), key


def test_fold_trains_on_the_other_folds(tiny_dataset, tmp_path):
    """``--fold N`` validates on fold N of a seeded k-fold split of all items and writes under ``<output>/foldN``."""
    parser = ConfigParser()
    parser.read_config("bundles/unet/train.json")
    parser.update({"dataset_dir": str(tiny_dataset), "fold": 1, "num_folds": 3})
    splits = parser.get_parsed_content("splits")
    assert parser.get_parsed_content("output_dir") == "outputs/unet/fold1"
    names = [{item["name"] for item in splits[part]} for part in ("train", "val")]
    assert len(names[1]) == 2 and len(names[0]) == 4 and not names[0] & names[1]
    other = ConfigParser()
    other.read_config("bundles/unet/train.json")
    other.update({"dataset_dir": str(tiny_dataset), "fold": 2, "num_folds": 3})
    assert not names[1] & {item["name"] for item in other.get_parsed_content("splits")["val"]}


@pytest.mark.slow
def test_cosine_schedule_saves_snapshots(tiny_dataset, tmp_path):
    """The snapshot recipe: with ``--lr_schedule cosine`` a checkpoint is kept at the end of every cycle."""
    workflow = _workflow("unet", tiny_dataset, tmp_path, epochs=4, lr_schedule="cosine", cosine_cycle=2)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    models = tmp_path / "latest" / "models"
    snapshots = sorted(p.name for p in models.glob("snapshot*.pt"))
    assert snapshots == ["snapshot_model_epoch=2.pt", "snapshot_model_epoch=4.pt"]
    # the snapshot ensemble: every snapshot, by pattern, averaged by evaluate.json
    evaluation = ConfigWorkflow(
        config_file="bundles/unet/evaluate.json",
        workflow_type="infer",
        run_id="evaluating",
        logging_file=False,
        dataset_dir=str(tiny_dataset),
        checkpoints=[str(models / "snapshot_*.pt")],
        output_dir=str(tmp_path / "eval"),
        spatial_size=[SIZES["unet"]] * 2,
        device="cpu",
        num_workers=0,
    )
    evaluation.initialize()
    assert len(evaluation.parser.get_parsed_content("networks")) == 2
    evaluation.run()
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["num_images"] == 2 and summary["weights"] == snapshots


class _Crash(RuntimeError):
    pass


def _crash_at_epoch(epoch: int):
    def crash(engine) -> None:
        if engine.state.epoch == epoch:
            raise _Crash(f"simulated crash at the start of epoch {epoch}")

    return crash


def test_resume_continues_bit_for_bit(tiny_dataset, tmp_path):
    """A run that crashed after epoch 2 of 4, resumed with --resume true, ends with the uninterrupted run's weights,
    metrics and best model (augmentation on: the random states of every transform are restored too)."""
    from ignite.engine import Events

    settings = {"epochs": 4, "extra_augmentation": True}
    straight = _workflow("unet", tiny_dataset, tmp_path / "straight", **settings)
    straight.initialize()
    straight.run()
    straight.finalize()

    crashed = _workflow("unet", tiny_dataset, tmp_path / "resumed", **settings)
    crashed.initialize()
    trainer = crashed.parser.get_parsed_content("train#trainer")
    trainer.add_event_handler(Events.EPOCH_STARTED, _crash_at_epoch(3))
    with pytest.raises(RuntimeError) as raised:
        crashed.run()
    assert "simulated crash" in str(raised.value) + str(raised.value.__cause__)
    (run,) = (tmp_path / "resumed" / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["epochs_run"] == 2 and "simulated crash" in summary["error"]
    assert not (tmp_path / "resumed" / "latest").exists()  # a failed run is not published

    resumed = _workflow("unet", tiny_dataset, tmp_path / "resumed", resume=True, **settings)
    resumed.initialize()
    resumed.run()
    resumed.finalize()
    assert [p.name for p in (tmp_path / "resumed" / "runs").iterdir()] == [run.name]  # the same run folder
    assert (tmp_path / "resumed" / "latest").resolve() == run.resolve()

    a, b = (tmp_path / name / "latest" for name in ("straight", "resumed"))
    for weights in ("model_final.pt", "model.pt"):
        sa = torch.load(a / "models" / weights, weights_only=True)
        sb = torch.load(b / "models" / weights, weights_only=True)
        difference = max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)
        assert difference == 0.0, (weights, difference)
    columns = ("epoch", "loss", "lr", "val_iou", "val_dice")
    rows = [[{k: r[k] for k in columns} for r in csv.DictReader((d / "metrics.csv").open())] for d in (a, b)]
    assert rows[0] == rows[1] and len(rows[0]) == 4
    summaries = [json.loads((d / "summary.json").read_text()) for d in (a, b)]
    assert summaries[1]["status"] == "finished" and summaries[0]["best"]["epoch"] == summaries[1]["best"]["epoch"]


def test_a_failed_resume_leaves_the_run_summary_as_it_was(tiny_dataset, tmp_path):
    """A resume whose training state cannot be loaded adds the failed attempt to the run's summary ``events`` and
    leaves the rest as it was (it rewrote ``epochs_run 0``, ``best null``)."""
    from ignite.engine import Events

    crashed = _workflow("unet", tiny_dataset, tmp_path, epochs=2)
    crashed.initialize()
    crashed.parser.get_parsed_content("train#trainer").add_event_handler(Events.EPOCH_STARTED, _crash_at_epoch(2))
    with pytest.raises(RuntimeError):
        crashed.run()
    (run,) = (tmp_path / "runs").iterdir()
    before = json.loads((run / "summary.json").read_text())
    assert before["epochs_run"] == 1 and before["best"] is not None
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    resumed = _workflow("unet", tiny_dataset, tmp_path, epochs=2, resume=True)
    with pytest.raises(RuntimeError):
        resumed.initialize()
        resumed.run()
    after = json.loads((run / "summary.json").read_text())
    events = after.pop("events")
    assert after == before
    assert len(events) == 1 and events[0]["status"] == "failed" and events[0]["error"]


def test_resume_with_fewer_epochs_than_done_says_what_to_pass(tiny_dataset, tmp_path):
    from ignite.engine import Events

    crashed = _workflow("unet", tiny_dataset, tmp_path, epochs=3)
    crashed.initialize()
    crashed.parser.get_parsed_content("train#trainer").add_event_handler(Events.EPOCH_STARTED, _crash_at_epoch(3))
    with pytest.raises(RuntimeError):
        crashed.run()
    resumed = _workflow("unet", tiny_dataset, tmp_path, epochs=1, resume=True)
    with pytest.raises(RuntimeError) as raised:
        resumed.initialize()
        resumed.run()
    cause = root_cause(raised.value)  # what the command prints
    assert isinstance(cause, ValueError)
    assert "has trained 2 epochs, more than --epochs 1: resume with --epochs above 2" in str(cause)


def test_resume_without_an_unfinished_run_is_refused(tiny_dataset, tmp_path):
    workflow = _workflow("unet", tiny_dataset, tmp_path, resume=True)
    with pytest.raises(RuntimeError) as raised:
        workflow.initialize()
        workflow.run()
    cause = raised.value
    while cause.__cause__ is not None:
        cause = cause.__cause__
    assert isinstance(cause, FileNotFoundError) and "no unfinished run" in str(cause)


def test_caches_hold_compact_types_and_items_come_out_float32(tiny_dataset, tmp_path):
    """float16 images and training masks, uint8 validation masks in memory; float32 for augmentation and the network."""
    parser = ConfigParser()
    parser.read_config("bundles/unet/train.json")
    parser.update({"dataset_dir": str(tiny_dataset), "output_dir": str(tmp_path), "spatial_size": [64, 64]})
    train, val = parser.get_parsed_content("train#dataset"), parser.get_parsed_content("validate#dataset")
    assert {k: train._cache[0][k].dtype for k in ("image", "label")} == {"image": torch.float16, "label": torch.float16}
    assert {k: val._cache[0][k].dtype for k in ("image", "label")} == {"image": torch.float16, "label": torch.uint8}
    for item in (train[0], val[0]):
        assert item["image"].dtype == item["label"].dtype == torch.float32
    assert set(torch.unique(val[0]["label"]).tolist()) <= {0.0, 1.0}
