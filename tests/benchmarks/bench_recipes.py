"""Benchmark (not a test): the default training recipe against the seeds' recipe, same data, size and epochs.

Each bundle is trained twice with the README's command, once per recipe, at the same ``--spatial_size`` and
``--epochs`` (the seeds' recipe then differs from the default only in what a recipe sets: learning rate and schedule,
warm-up, patience, output-bias initialisation and augmentation). Validation scores are those of ``metrics.csv``: the
``val`` split at native resolution. Prints one JSON object (the last line of standard output): the machine, the
settings and one row per run.

Run from the repository root, on a quiet machine (each run takes minutes on a CPU)::

    python tests/benchmarks/bench_recipes.py --dataset_dir ../shared/data/lung_ct --output_dir /tmp/recipes \
        --run unet:256:30 --run cenet:192:20 --run aspp:192:20 --run inception_unet:256:30
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _train(bundle: str, size: int, epochs: int, recipe: str, args: argparse.Namespace) -> dict:
    out = Path(args.output_dir) / f"{bundle}_{size}_{epochs}_{recipe}"
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", str(REPO / "bundles" / bundle / "train.json"),
        "--dataset_dir", args.dataset_dir, "--output_dir", str(out), "--recipe", recipe,
        "--spatial_size", f"[{size},{size}]", "--epochs", str(epochs), *args.extra,
    ]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    with (out / "train.log").open("w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}, check=False)
    wall = time.perf_counter() - tick
    metrics = out / "latest" / "metrics.csv"  # the finished run
    rows = list(csv.DictReader(metrics.open())) if metrics.is_file() else []
    scored = [r for r in rows if r.get("val_iou")]
    best = max(scored, key=lambda r: float(r["val_iou"])) if scored else {}
    return {
        "bundle": bundle,
        "recipe": recipe,
        "spatial_size": size,
        "epochs": epochs,
        "exit_code": result.returncode,
        "wall_s": round(wall, 1),
        "first_epoch_val_iou": float(scored[0]["val_iou"]) if scored else None,
        "best_epoch": int(best["epoch"]) if best else None,
        **{f"best_{k}": float(best[k]) for k in ("val_iou", "val_dice", "val_hd95") if k in best},
        "output_dir": str(out),
    }


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--dataset_dir", required=True)
    cli.add_argument("--output_dir", required=True)
    cli.add_argument("--run", action="append", required=True, help="bundle:size:epochs, e.g. unet:256:30")
    cli.add_argument("--recipes", nargs="+", default=["default", "seeds"])
    args, args.extra = cli.parse_known_args()
    rows = []
    for spec in args.run:
        bundle, size, epochs = spec.split(":")
        for recipe in args.recipes:  # alternating per bundle, so that machine drift hits both recipes alike
            rows.append(_train(bundle, int(size), int(epochs), recipe, args))
            print(json.dumps(rows[-1]), file=sys.stderr)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__}
    machine["threads"] = torch.get_num_threads()
    print(json.dumps({"machine": machine, "dataset_dir": args.dataset_dir, "extra_args": args.extra, "runs": rows}))


if __name__ == "__main__":
    main()
