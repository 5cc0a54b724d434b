"""Benchmark (not a test): the bundle's Ignite training loop against a bare PyTorch loop, data waits, validation cost.

Both loops train the bundle's own network, loss and optimizer on the bundle's own cached training dataset (the same
deterministic preprocessing and random augmentation), through the same ``ThreadDataLoader`` and batch size; they
take turns, epoch by epoch after one warm-up epoch each, so that machine noise hits both alike. The Ignite loop is the
bundle's ``train#trainer`` with every training handler attached (checkpoints, TensorBoard, report, schedule) and
validation switched off, so that an epoch is the training part only. Measured:

1. training images/s of each loop, and their ratio (target: Ignite at least 0.95 of the bare loop);
2. the share of the Ignite loop's iteration time spent waiting for the next batch, after the first epoch (target: under
   5 %);
3. validation seconds per image at native resolution (``validate#evaluator``), and its share of an epoch.

Prints one JSON object (the last line of standard output). Run from anywhere, on a quiet machine::

    python tests/benchmarks/bench_engine.py --bundle unet --dataset_dir ../shared/data/lung_ct --spatial_size 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow
from monai.data import ThreadDataLoader

REPO = Path(__file__).resolve().parents[2]


def _workflow(args: argparse.Namespace, output_dir: str) -> ConfigWorkflow:
    overrides = {
        "dataset_dir": args.dataset_dir,
        "output_dir": output_dir,
        "device": args.device,
        "val_interval": 10**6,  # the Ignite epochs measure training only; validation is timed on its own
        "epochs": 10**6,
    }
    if args.spatial_size:
        overrides["spatial_size"] = [args.spatial_size] * 2
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    workflow = ConfigWorkflow(
        config_file=str(REPO / "bundles" / args.bundle / "train.json"),
        workflow_type="train",
        run_id="training",
        logging_file=False,
        **overrides,
    )
    workflow.initialize()
    return workflow


class _DataWait:
    """Seconds the trainer spent fetching batches, and in whole iterations, per epoch."""

    def __init__(self, trainer) -> None:
        self.fetch = self.total = 0.0
        trainer.add_event_handler(Events.GET_BATCH_STARTED, self._fetch_started)
        trainer.add_event_handler(Events.GET_BATCH_COMPLETED, self._fetch_completed)
        trainer.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        self.shares: list[float] = []

    def _fetch_started(self, _) -> None:
        self._tick = time.perf_counter()

    def _fetch_completed(self, _) -> None:
        self.fetch += time.perf_counter() - self._tick

    def _epoch_started(self, _) -> None:
        self.fetch, self._start = 0.0, time.perf_counter()

    def _epoch_completed(self, _) -> None:
        self.shares.append(self.fetch / (time.perf_counter() - self._start))


def _bare_epoch(parser, loader: ThreadDataLoader, device: torch.device) -> int:
    network, loss_function, optimizer = (parser.get_parsed_content(k) for k in ("network", "loss", "optimizer"))
    network.train()
    seen = 0
    for batch in loader:
        images, labels = batch["image"].to(device), batch["label"].to(device)
        optimizer.zero_grad(set_to_none=True)
        loss_function(network(images), labels).backward()
        optimizer.step()
        seen += len(images)
    return seen


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--bundle", default="unet")
    cli.add_argument("--dataset_dir", default=None, help="default: the bundle's demo data")
    cli.add_argument("--spatial_size", type=int, default=None)
    cli.add_argument("--batch_size", type=int, default=None)
    cli.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    cli.add_argument("--epochs", type=int, default=3, help="measured epochs per loop, after one warm-up epoch each")
    args = cli.parse_args()
    if args.dataset_dir is None:
        args.dataset_dir = str(REPO / "datasets" / "demo_ct")

    with tempfile.TemporaryDirectory() as out:
        workflow = _workflow(args, out)
        parser = workflow.parser
        trainer = parser.get_parsed_content("train#trainer")
        parser.get_parsed_content("training#0")  # the bundle's own wiring: early stopping knows the trainer
        dataset = parser.get_parsed_content("train#dataset")
        batch_size = parser.get_parsed_content("batch_size")
        loader = ThreadDataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
        device = torch.device(args.device)
        waits = _DataWait(trainer)
        ignite_s: list[float] = []
        bare_s: list[float] = []

        def take_turns(engine) -> None:
            """After the bundle's own epoch handlers: note the Ignite epoch, then run one bare epoch."""
            if engine.state.epoch > 1:  # epoch 1 warms both loops up and is not counted
                ignite_s.append(time.perf_counter() - started[0])
            tick = time.perf_counter()
            _bare_epoch(parser, loader, device)
            if engine.state.epoch > 1:
                bare_s.append(time.perf_counter() - tick)

        started = [0.0]
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: started.__setitem__(0, time.perf_counter()))
        trainer.add_event_handler(Events.EPOCH_COMPLETED, take_turns)
        trainer.state.max_epochs = args.epochs + 1
        trainer.run()
        evaluator = parser.get_parsed_content("validate#evaluator")
        tick = time.perf_counter()
        evaluator.run()
        validation_s = time.perf_counter() - tick
        num_val = len(parser.get_parsed_content("validate#dataset"))

    images = len(dataset)
    ignite_rate, bare_rate = images / statistics.median(ignite_s), images / statistics.median(bare_s)
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
        "settings": {
            "bundle": args.bundle,
            "dataset_dir": args.dataset_dir,
            "training_images": images,
            "spatial_size": parser.get_parsed_content("spatial_size"),
            "batch_size": batch_size,
            "measured_epochs": args.epochs,
        },
        "training": {
            "ignite_epoch_s": [round(s, 3) for s in ignite_s],
            "bare_epoch_s": [round(s, 3) for s in bare_s],
            "ignite_images_per_s": round(ignite_rate, 2),
            "bare_images_per_s": round(bare_rate, 2),
            "ignite_over_bare": round(ignite_rate / bare_rate, 3),
            "target_ignite_over_bare": 0.95,
        },
        "data_wait": {
            "share_per_epoch": [round(s, 4) for s in waits.shares[1:]],
            "share_median": round(statistics.median(waits.shares[1:]), 4) if len(waits.shares) > 1 else None,
            "target": 0.05,
        },
        "validation": {
            "images": num_val,
            "seconds": round(validation_s, 3),
            "seconds_per_image": round(validation_s / max(num_val, 1), 4),
            "share_of_epoch": round(validation_s / (validation_s + statistics.median(ignite_s)), 4),
        },
    }
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
