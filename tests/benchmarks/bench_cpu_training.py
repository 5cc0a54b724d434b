"""Benchmark (not a test): training on the CPU in float32 against bfloat16 autocast, side by side (issue 29).

Each bundle is trained with the README's command on ``--dataset_dir`` in its default recipe, twice per repeat:
``--amp false --channels_last false`` (float32, contiguous: the CPU's old default) and ``--amp true --channels_last
true`` (bfloat16 autocast of the network, channels-last weights and batches: the default where the CPU runs bfloat16
natively). The order alternates between repeats, so that a drift in the machine's speed falls on both. Per run it
reports the training images per second (the epochs' time less their validation, from the training log), the epoch
time with validation, and the best validation IoU and Dice of ``summary.json`` (the ``val`` split at native
resolution). First, each bundle's training step alone (forward, loss, backward, Adam on a random batch) in both
precisions, to tell the model's share from the data pipeline's. Prints a Markdown table, then one JSON object (the
last line of standard output).

Run from the repository root, on a quiet machine (minutes per run on a 2-core CPU)::

    python tests/benchmarks/bench_cpu_training.py --dataset_dir ../shared/data/lung_ct --output_dir /tmp/cpu_train \
        --bundle unet --bundle cenet --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch
from bench_gpu import measure

REPO = Path(__file__).resolve().parents[2]
PRECISIONS = {
    "fp32": ["--amp", "false", "--channels_last", "false"],
    "bf16": ["--amp", "true", "--channels_last", "true"],
}
_BATCHES = re.compile(r"(\d+) training batches per epoch")
_EPOCH = re.compile(r"epoch \d+/\d+ .* ([\d.]+) s \(validation ([\d.]+) s\)")


def timings(log: str, batch_size: int) -> dict:
    """Training images per second and mean epoch seconds from a training log (times to 0.1 s).

    Args:
        log: the command's output (the ``pipeline.training`` lines).
        batch_size: the recipe's batch size (the last batch of an epoch may be smaller: a slight overcount).
    """
    batches = _BATCHES.search(log)
    epochs = [(float(total), float(validation)) for total, validation in _EPOCH.findall(log)]
    if batches is None or not epochs:
        raise ValueError("the training log has no 'training batches per epoch' line or no epoch line")
    training_s = sum(total - validation for total, validation in epochs)
    images = int(batches.group(1)) * batch_size * len(epochs)
    return {
        "epochs": len(epochs),
        # None when the epochs are too short for the log's 0.1 s resolution (tiny test runs)
        "images_per_s": round(images / training_s, 2) if training_s > 0 else None,
        "epoch_s": round(sum(total for total, _ in epochs) / len(epochs), 2),
    }


def train(bundle: str, precision: str, repeat: int, args: argparse.Namespace) -> dict:
    """One training run; its figures, or its error."""
    out = Path(args.output_dir) / f"{bundle}_{precision}_{repeat}"
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", str(REPO / "bundles" / bundle / "train.json"),
        "--dataset_dir", args.dataset_dir, "--output_dir", str(out), *PRECISIONS[precision], *args.extra,
    ]  # fmt: skip
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ}, check=False)
    row = {"bundle": bundle, "precision": precision, "repeat": repeat}
    if done.returncode != 0:
        return {**row, "error": (done.stdout + done.stderr).strip().splitlines()[-1:]}
    summary = json.loads((out / "latest" / "summary.json").read_text())
    best = summary["best"]
    return {
        **row,
        **timings(done.stdout + done.stderr, args.batch_size),
        "best_epoch": best["epoch"],
        "val_iou": round(best["val_iou"], 4),
        "val_dice": round(best["val_dice"], 4),
    }


def step_rates(bundle: str, size: int, batch_size: int, steps: int = 6) -> dict[str, float]:
    """Training steps alone, with ``bench_gpu``'s measurement on the CPU (the bundle's network, DiceCE, Adam, a random
    batch): images per second in float32 with contiguous weights and in bfloat16 with channels-last, best of two."""
    options = argparse.Namespace(bundle=bundle, spatial_size=size, warmup=1, steps=steps)
    rates: dict[str, float] = {}
    for _ in range(2):
        for name, variant in (("fp32", "fp32"), ("bf16", "bf16_channels_last")):
            row = measure(options, variant, batch_size, torch.device("cpu"))
            rates[name] = max(rates.get(name, 0.0), row["train_images_per_s"])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--bundle", action="append", help="a bundle to train (repeatable); default unet")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=0, help="override the recipe's epochs (0: the recipe's)")
    parser.add_argument("--batch_size", type=int, default=4, help="the recipe's batch size, for images per second")
    parser.add_argument("--steps_only", action="store_true", help="only the training steps alone, no training runs")
    parser.add_argument("--step_size", type=int, default=192, help="image size of the training steps alone")
    parser.add_argument("extra", nargs="*", help="more overrides for every run, after --")
    args = parser.parse_args()
    steps = {bundle: step_rates(bundle, args.step_size, args.batch_size) for bundle in args.bundle or ["unet"]}
    for bundle, rates in steps.items():
        print(f"training steps alone, {bundle} at {args.step_size} px, batch {args.batch_size}: {rates} images/s")
    rows = []
    for bundle in [] if args.steps_only else args.bundle or ["unet"]:
        for repeat in range(args.repeats):
            order = list(PRECISIONS) if repeat % 2 == 0 else list(reversed(PRECISIONS))
            for precision in order:
                rows.append(train(bundle, precision, repeat, args))
                print(json.dumps(rows[-1]), flush=True)
    print("\n| bundle | precision | run | images/s | epoch s | epochs | best epoch | val IoU | val Dice |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['bundle']} | {r['precision']} | {r['repeat']} | error: {r['error']} | | | | | |")
        else:
            print(
                f"| {r['bundle']} | {r['precision']} | {r['repeat']} | {r['images_per_s']} | {r['epoch_s']} | "
                f"{r['epochs']} | {r['best_epoch']} | {r['val_iou']} | {r['val_dice']} |"
            )
    machine = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load": os.getloadavg()[0],
    }
    print(json.dumps({"machine": machine, "dataset_dir": args.dataset_dir, "steps_alone": steps, "rows": rows}))


if __name__ == "__main__":
    main()
