"""MONAI drives the bundles by id: nested overrides, overlay files, ``--tracking`` hooks, any working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.bundle.utils import DEFAULT_HANDLERS_ID, DEFAULT_MLFLOW_SETTINGS
from monai.handlers import EarlyStopHandler, ValidationHandler
from monai.transforms import AsDiscreted, RandBiasFieldd, RandGaussianNoised, RandScaleIntensityFixedMeand, Resized
from torch.utils.data import RandomSampler

from pipeline.demo import write_demo_dataset

REPO = Path(__file__).resolve().parents[2]
UNET = REPO / "bundles" / "unet"
WORKFLOW = {"train": ("train", "training"), "evaluate": ("infer", "evaluating"), "inference": ("infer", "inference")}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), num_cases=4, size=64, val_fraction=0.5, seed=3)


@pytest.fixture(scope="module")
def unet_weights(tmp_path_factory, tiny_dataset) -> Path:
    """Untrained weights, without a model card, of the unet for the tiny dataset's one structure."""
    parser = ConfigParser()
    parser.read_config(UNET / "train.json")
    parser["dataset_dir"] = str(tiny_dataset)
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


def _workflow(config: str, dataset: Path, weights: Path, tmp_path: Path, **override: Any) -> ConfigWorkflow:
    """A bundle workflow as ``python -m monai.bundle run`` builds it, on the tiny data (CPU, no worker processes)."""
    workflow_type, run_id = WORKFLOW[config]
    settings = {"dataset_dir": str(dataset), "output_dir": str(tmp_path / "out"), "device": "cpu", "num_workers": 0}
    if config != "train":
        settings["checkpoint"] = str(weights)
    if config == "inference":  # the dataset_dir stays: weights without a model card segment its structures
        settings["input"] = str(dataset / "images")
    settings.update(override)
    return ConfigWorkflow(
        config_file=str(UNET / f"{config}.json"),
        workflow_type=workflow_type,
        run_id=run_id,
        logging_file=False,
        **settings,
    )


def _of_type(items, cls: type) -> Any:
    """The one item of type ``cls`` in a list, or in a ``Compose``."""
    (found,) = [item for item in getattr(items, "transforms", items) if isinstance(item, cls)]
    return found


def _trainer(parser: ConfigParser):
    return parser.get_parsed_content("train#trainer")


def _validator(parser: ConfigParser):
    return parser.get_parsed_content("validate#evaluator")


def _runner(parser: ConfigParser):
    return parser.get_parsed_content("runner")


def _threshold(postprocessing) -> float:
    return _of_type(postprocessing, AsDiscreted).threshold[0]


# config, nested id, new value, what the running objects then hold
OVERRIDES: list[tuple[str, str, Any, Callable[[ConfigParser], Any]]] = [
    ("train", "train#dataloader#num_workers", 1, lambda p: _trainer(p).data_loader.num_workers),
    ("train", "train#dataloader#shuffle", False, lambda p: isinstance(_trainer(p).data_loader.sampler, RandomSampler)),
    (
        "train",
        "train#augmentation#2#prob",
        0.9,
        lambda p: _of_type(_trainer(p).data_loader.dataset.transform, RandScaleIntensityFixedMeand).prob,
    ),
    ("train", "train#trainer#max_epochs", 3, lambda p: _trainer(p).state.max_epochs),
    (
        "train",
        "train#handlers#2#interval",
        2,
        lambda p: _of_type(p.get_parsed_content("train#handlers"), ValidationHandler).interval,
    ),
    ("train", "optimizer#weight_decay", 1e-5, lambda p: _trainer(p).optimizer.param_groups[0]["weight_decay"]),
    ("train", "loss#lambda_dice", 0.5, lambda p: _trainer(p).loss_function.lambda_dice),
    ("train", "validate#inferer#overlap", 0.5, lambda p: _validator(p).inferer.overlap),
    (
        "train",
        "validate#handlers#0#patience",
        3,
        lambda p: _of_type(p.get_parsed_content("validate#handlers"), EarlyStopHandler).patience,
    ),
    ("train", "validate#dataloader#batch_size", 2, lambda p: _validator(p).data_loader.batch_size),
    (
        "train",
        "validate#postprocessing#transforms#2#threshold",
        0.7,
        lambda p: _threshold(p.get_parsed_content("validate#postprocessing")),
    ),
    ("evaluate", "dataloader#num_workers", 1, lambda p: p.get_parsed_content("evaluator").data_loader.num_workers),
    ("evaluate", "validate#inferer#overlap", 0.5, lambda p: p.get_parsed_content("evaluator").inferer.inferer.overlap),
    ("evaluate", "handlers#0#num_figure_cases", 2, lambda p: p.get_parsed_content("handlers")[0].num_figure_cases),
    ("inference", "predictor#batch_size", 2, lambda p: _runner(p).predictor.batch_size),
    ("inference", "validate#inferer#sw_batch_size", 2, lambda p: _runner(p).predictor.inferer.inferer.sw_batch_size),
    (
        "inference",
        "validate#resize#anti_aliasing",
        False,
        lambda p: _of_type(_runner(p).predictor.preprocessing, Resized).anti_aliasing[0],
    ),
    ("inference", "segment#label", "Liver", lambda p: _runner(p).segment.label),
    ("inference", "series_rules#largest_only", True, lambda p: _runner(p).series_rules.largest_only),
]


@pytest.mark.parametrize("config, key, value, read", OVERRIDES, ids=[f"{c}:{k}" for c, k, *_ in OVERRIDES])
def test_nested_override_reaches_the_running_object(config, key, value, read, tiny_dataset, unet_weights, tmp_path):
    """``--<nested id> <value>`` on the command line changes the object the workflow runs, not only the config text."""
    default = _workflow(config, tiny_dataset, unet_weights, tmp_path / "default")
    default.initialize()
    assert read(default.parser) != value, f"the test value of {key} is its default"
    changed = _workflow(config, tiny_dataset, unet_weights, tmp_path / "changed", **{key: value})
    changed.initialize()
    assert read(changed.parser) == value


def test_overlay_file_merges_by_id(tiny_dataset, tmp_path):
    """A model-zoo style overlay: nested ids replace engine arguments, ``+id`` appends to a handler list."""
    overlay = tmp_path / "overlay.json"
    overlay.write_text(
        json.dumps(
            {
                "train#trainer#max_epochs": 4,
                "validate#evaluator#val_handlers": "$@validate#handlers[1:]",
                "+train#handlers": [{"_target_": "StatsHandler", "name": "overlay", "iteration_log": False}],
            }
        )
    )
    workflow = ConfigWorkflow(
        config_file=[str(UNET / "train.json"), str(overlay)],
        workflow_type="train",
        run_id="training",
        logging_file=False,
        dataset_dir=str(tiny_dataset),
        output_dir=str(tmp_path / "out"),
        device="cpu",
        num_workers=0,
    )
    workflow.initialize()
    trainer, validator = _trainer(workflow.parser), _validator(workflow.parser)
    assert trainer.state.max_epochs == 4
    added = workflow.parser.get_parsed_content("train#handlers")[-1]
    assert type(added).__name__ == "StatsHandler" and trainer.has_event_handler(added.epoch_completed)
    early_stop = workflow.parser.get_parsed_content("validate#handlers")[0]
    assert isinstance(early_stop, EarlyStopHandler) and not validator.has_event_handler(early_stop)


def _tracking(handler_name: str) -> dict:
    """MONAI's ``--tracking`` settings with a handler that runs without an experiment server."""
    handler = {"_target_": "StatsHandler", "name": handler_name, "iteration_log": False}
    configs = {engine: dict(handler) for engine in ("trainer", "validator", "evaluator")}
    return {"handlers_id": DEFAULT_HANDLERS_ID, "configs": configs}


@pytest.mark.parametrize(
    "config, engines",
    [
        ("train", {"train#trainer": "train#handlers", "validate#evaluator": "validate#handlers"}),
        ("evaluate", {"evaluator": "handlers"}),
    ],
)
def test_tracking_attaches_to_every_engine(config, engines, tiny_dataset, unet_weights, tmp_path):
    """``--tracking`` finds the model-zoo engine ids and attaches its handlers to the engines that run."""
    mlflow = _workflow(
        config, tiny_dataset, unet_weights, tmp_path / "mlflow", tracking="mlflow", save_execute_config=False
    )
    for handlers in engines.values():  # MONAI's own mlflow settings patch the config (mlflow itself is optional)
        assert mlflow.parser[handlers][-1]["_target_"] == DEFAULT_MLFLOW_SETTINGS["configs"]["trainer"]["_target_"]

    workflow = _workflow(
        config, tiny_dataset, unet_weights, tmp_path, tracking=_tracking("tracked"), save_execute_config=False
    )
    workflow.initialize()
    for engine_id, handlers_id in engines.items():
        engine = workflow.parser.get_parsed_content(engine_id)
        tracked = workflow.parser.get_parsed_content(handlers_id)[-1]
        assert tracked.logger.name == "tracked"
        assert engine.has_event_handler(tracked.epoch_completed, Events.EPOCH_COMPLETED)


def test_threshold_is_one_setting(unet_weights, tmp_path):
    """Validation, evaluation and inference binarise the probability at the same ``threshold``."""
    found = {}
    postprocessing_ids = {
        "train": "validate#postprocessing",
        "evaluate": "postprocessing",
        "inference": "postprocessing",
    }
    for config, postprocessing in postprocessing_ids.items():
        parser = ConfigParser()
        parser.read_config(UNET / f"{config}.json")
        parser.update({"threshold": 0.3, "checkpoint": str(unet_weights), "device": "cpu"})
        found[config] = _threshold(parser.get_parsed_content(postprocessing))
    assert found == {"train": 0.3, "evaluate": 0.3, "inference": 0.3}


@pytest.mark.parametrize("config", ["train", "evaluate", "inference"])
def test_paths_do_not_depend_on_the_working_directory(config, tmp_path, monkeypatch):
    """``bundle_root`` is the bundle's folder and the demo data stays in the repository; outputs are relative."""
    monkeypatch.chdir(tmp_path)
    parser = ConfigParser()
    parser.read_config(UNET / f"{config}.json")
    assert Path(parser.get_parsed_content("bundle_root")) == UNET
    if "demo_dir" in parser:
        assert Path(parser.get_parsed_content("demo_dir")) == REPO / "datasets" / "demo_ct"
    suffix = {"train": "", "evaluate": "/evaluation", "inference": "/inference"}[config]
    assert parser.get_parsed_content("output_dir") == "outputs/unet" + suffix


@pytest.mark.slow
def test_cli_from_another_directory_with_overlay_and_nested_override(tiny_dataset, tmp_path):
    """The README's training command run outside the repository, with an overlay file and a nested override."""
    overlay = tmp_path / "overlay.json"
    overlay.write_text(json.dumps({"train#trainer#max_epochs": 1, "validate#inferer#overlap": 0.5}))
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", f"['{UNET / 'train.json'}','{overlay}']",
        "--dataset_dir", str(tiny_dataset), "--spatial_size", "[64,64]", "--batch_size", "2", "--device", "cpu",
        "--train#dataloader#num_workers", "0", "--num_workers", "0",
    ]  # fmt: skip
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env={**os.environ}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 1/1" in result.stdout + result.stderr  # the overlay's max_epochs, not the recipe's 10
    assert (cwd / "outputs" / "unet" / "latest" / "models" / "model.pt").is_file()
    assert json.loads((cwd / "outputs" / "unet" / "latest" / "summary.json").read_text())["epochs_run"] == 1


@pytest.mark.parametrize(
    "config, deviations",
    [
        ("train", set()),
        # evaluation reuses validation's preprocessing and metrics, under their validate# ids
        ("evaluate", {"preprocessing", "key_metric"}),
    ],
)
def test_monai_finds_the_workflow_properties(config, deviations, tiny_dataset, unet_weights, tmp_path):
    """MONAI's own property check (model-zoo ids such as ``train#preprocessing``, ``val_interval``, ``evaluator``)."""
    workflow = _workflow(config, tiny_dataset, unet_weights, tmp_path)
    workflow.initialize()
    assert set(workflow.check_properties()) == deviations


# setting, config, what the running object holds when the setting is on
FLAGS = [
    ("flip_tta", "evaluate", lambda p: len(p.get_parsed_content("inferer").flips) > 1),
    ("fill_holes", "evaluate", lambda p: len(p.get_parsed_content("mask_cleanup")) == 1),
    ("save_cases", "evaluate", lambda p: p.get_parsed_content("handlers")[0].save_cases),
    ("largest_series_only", "inference", lambda p: _runner(p).series_rules.largest_only),
    ("volume_fill_holes", "inference", lambda p: _runner(p).volume_cleanup.fill_holes),
    ("amp", "train", lambda p: _trainer(p).inferer.amp and _validator(p).inferer.amp),
    (
        "extra_augmentation",
        "train",
        lambda p: any(isinstance(t, RandGaussianNoised) for t in _trainer(p).data_loader.dataset.transform.transforms),
    ),
    (
        "colour_augmentation",
        "train",
        lambda p: any(isinstance(t, RandBiasFieldd) for t in _trainer(p).data_loader.dataset.transform.transforms),
    ),
]


@pytest.mark.parametrize("name, config, read", FLAGS, ids=[f[0] for f in FLAGS])
def test_on_off_settings_read_command_line_words(name, config, read, tiny_dataset, unet_weights, tmp_path):
    """``--flip_tta false`` reaches the config as the string "false", which Python takes as true; it must mean off."""
    for text, expected in (("true", True), ("false", False), ("False", False), ("yes", True)):
        workflow = _workflow(config, tiny_dataset, unet_weights, tmp_path / text, **{name: text})
        workflow.initialize()
        assert bool(read(workflow.parser)) is expected, text
    workflow = _workflow(config, tiny_dataset, unet_weights, tmp_path / "bad", **{name: "maybe"})
    with pytest.raises(RuntimeError) as raised:
        workflow.initialize()
        read(workflow.parser)
    assert f"--{name} must be true or false, got 'maybe'" in str(raised.value.__cause__ or raised.value)
