"""Benchmark (not a test): bundles trained and scored on a polyp set, as issue 30's table asks.

For each ``--run bundle:size:epochs[:recipe]``: the README's training command on ``--dataset_dir`` with no
``--modality`` or ``--in_channels`` (the data decides), then the evaluation command on the validation split at the
frames' native resolution. Per run it reports the means over the validation frames of Dice, IoU and HD95 (of the
polyp), the Dice of the small polyps (a mask under ``--small`` of its frame, 2 % by default) apart, and the training's
wall time. Prints a Markdown table, then one JSON object (the last line of standard output).

Run from the repository root, on a quiet machine (one run takes hours on a 2-core CPU)::

    python tests/benchmarks/bench_polyps.py --dataset_dir ../shared/data/kvasir_seg --output_dir /tmp/polyps \
        --run unet:352:60 --run cenet:352:60 --run unet:352:60:seeds
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _command(args: list[str], log: Path) -> int:
    with log.open("w") as out:
        return subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ}, check=False).returncode


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return round(sum(finite) / len(finite), 4) if finite else None


def scores(per_image: Path, small: float) -> dict:
    """The run's figures from the evaluation's ``per_image.csv``: means over the frames, and the small polyps' Dice.

    Args:
        per_image: the evaluation's ``per_image.csv`` (``dice``, ``iou``, ``hd95``, ``label_px``, ``image_px``).
        small: the share of its frame under which a polyp counts as small.
    """
    rows = list(csv.DictReader(per_image.open()))
    small_rows = [r for r in rows if int(r["label_px"]) < small * int(r["image_px"])]
    return {
        "frames": len(rows),
        "dice": _mean([float(r["dice"]) for r in rows]),
        "iou": _mean([float(r["iou"]) for r in rows]),
        "hd95": _mean([float(r["hd95"]) for r in rows]),
        "small_frames": len(small_rows),
        "small_dice": _mean([float(r["dice"]) for r in small_rows]),
    }


def parse_run(spec: str) -> tuple[str, str, str, str, dict[str, str]]:
    """``bundle:size:epochs[:recipe][:setting=value...]`` as (bundle, size, epochs, recipe, overrides).

    Example: ``unet:192:30:colour:colour_augmentation=false`` trains the colour recipe without colour augmentation;
    without a recipe the run takes ``auto`` (the bundles' default: ``colour`` for colour frames).
    """
    bundle, size, epochs, *rest = spec.split(":")
    overrides = dict(part.split("=", 1) for part in rest if "=" in part)
    recipes = [part for part in rest if "=" not in part]
    return bundle, size, epochs, recipes[0] if recipes else "auto", overrides


def _run(spec: str, args: argparse.Namespace) -> dict:
    bundle, size, epochs, recipe, overrides = parse_run(spec)
    suffix = "".join(f"_{key}-{value}" for key, value in overrides.items())
    out = Path(args.output_dir) / f"{bundle}_{size}_{epochs}_{recipe}{suffix}"
    out.mkdir(parents=True, exist_ok=True)
    config = REPO / "bundles" / bundle
    # the README's command: only what is asked for is passed
    settings = [
        *(["--device", args.device] if args.device else []),
        *(["--num_workers", str(args.num_workers)] if args.num_workers is not None else []),
    ]
    train = [
        sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(config / "train.json"),
        "--dataset_dir", args.dataset_dir, "--output_dir", str(out), "--recipe", recipe,
        "--spatial_size", f"[{size},{size}]", "--epochs", epochs, *settings,
        *(item for key, value in overrides.items() for item in (f"--{key}", value)),
    ]  # fmt: skip
    tick = time.perf_counter()
    trained = _command(train, out / "train.log")
    minutes = (time.perf_counter() - tick) / 60
    evaluate = [
        sys.executable, "-m", "monai.bundle", "run", "evaluating", "--config_file", str(config / "evaluate.json"),
        "--dataset_dir", args.dataset_dir, "--train_output_dir", str(out), "--output_dir", str(out / "evaluation"),
        *settings,
    ]  # fmt: skip
    evaluated = _command(evaluate, out / "evaluate.log") if trained == 0 else None
    per_image = out / "evaluation" / "per_image.csv"
    figures = scores(per_image, args.small) if evaluated == 0 and per_image.is_file() else {}
    card = json.loads((out / "latest" / "models" / "model.json").read_text()) if trained == 0 else {}
    return {
        "bundle": bundle,
        "recipe": recipe + "".join(f", {key}={value}" for key, value in overrides.items()),
        "spatial_size": int(size),
        "epochs": int(epochs),
        "training_exit": trained,
        "evaluation_exit": evaluated,
        "minutes": round(minutes, 1),
        "modality": card.get("settings", {}).get("modality"),
        "in_channels": card.get("settings", {}).get("in_channels"),
        **figures,
        "output_dir": str(out),
    }


def _table(rows: list[dict]) -> str:
    lines = ["| bundle | recipe | size | Dice | IoU | HD95 | small-polyp Dice (frames) | minutes |", "|---" * 8 + "|"]
    for r in rows:
        lines.append(
            f"| {r['bundle']} | {r['recipe']} | {r['spatial_size']} | {r.get('dice')} | {r.get('iou')} | "
            f"{r.get('hd95')} | {r.get('small_dice')} ({r.get('small_frames')}) | {r['minutes']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_dir", required=True, help="a polyp set: folder or datalist (validation split)")
    parser.add_argument("--output_dir", required=True, help="where each run's folder goes")
    parser.add_argument("--run", action="append", required=True, help="bundle:size:epochs[:recipe][:setting=value...]")
    parser.add_argument("--small", type=float, default=0.02, help="a polyp under this share of its frame is small")
    parser.add_argument("--device", default=None, help="default: the bundles' own (a GPU when there is one)")
    parser.add_argument("--num_workers", type=int, default=None, help="default: the bundles' own")
    args = parser.parse_args(argv)
    rows = [_run(spec, args) for spec in args.run]
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "torch": torch.__version__,
        "dataset_dir": os.path.basename(os.path.normpath(args.dataset_dir)),
        "small_share": args.small,
        "runs": rows,
    }
    print(_table(rows))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
