"""Training images/s with one process against several (``torchrun`` + ``multi_gpu_train.json``), same global batch.

One process with every thread of the machine, against N processes (gloo on the CPU, NCCL on GPUs) with the threads
shared out between them and the batch split between them, so that each step sees the same global batch. Validation is
switched off (``--val_interval`` past the last epoch): this measures the training loop. The first epoch (caching,
warm-up) is left out; images/s is the training set over the median of the other epochs' times (``metrics.csv``).
The runs alternate, ``--repeats`` times, so that machine noise hits both alike. Run from the repository root::

    python tests/benchmarks/bench_scaling.py --bundle unet --spatial_size 128 --epochs 4 --batch_size 8
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "bundles" / "common" / "multi_gpu_train.json"


def _run(args: argparse.Namespace, dataset: Path, out: Path, processes: int) -> list[float]:
    """Epoch seconds of one training run with ``processes`` processes."""
    threads = max(1, (os.cpu_count() or 1) // processes)
    config = REPO / "bundles" / args.bundle / "train.json"
    if processes > 1:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        launcher = [torchrun, "--standalone", f"--nproc_per_node={processes}"]
        files = f"['{config}','{OVERLAY}']"
    else:
        launcher, files = [sys.executable], str(config)
    command = [
        *launcher, "-m", "monai.bundle", "run", "training", "--config_file", files, "--dataset_dir", str(dataset),
        "--output_dir", str(out), "--epochs", str(args.epochs), "--batch_size", str(args.batch_size // processes),
        "--spatial_size", f"[{args.spatial_size},{args.spatial_size}]", "--val_interval", str(args.epochs + 1),
        "--num_workers", "0", "--device", args.device,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=out.parent)
    if result.returncode != 0:
        raise RuntimeError(f"{processes} process(es) failed:\n{result.stderr[-3000:]}")
    (run,) = (out / "runs").iterdir()
    with (run / "metrics.csv").open() as f:
        return [float(row["seconds"]) for row in csv.DictReader(f)]


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--bundle", default="unet")
    cli.add_argument("--dataset_dir", default=None, help="default: a synthetic set of --cases slices")
    cli.add_argument("--cases", type=int, default=96)
    cli.add_argument("--spatial_size", type=int, default=128)
    cli.add_argument("--epochs", type=int, default=4)
    cli.add_argument("--batch_size", type=int, default=8, help="global batch, split between the processes")
    cli.add_argument("--processes", type=int, default=2)
    cli.add_argument("--repeats", type=int, default=2)
    cli.add_argument("--device", default="cpu")
    args = cli.parse_args()
    if args.batch_size % args.processes:
        cli.error(f"--batch_size {args.batch_size} does not split into {args.processes} processes")

    from pipeline.demo import write_demo_dataset
    from pipeline.intake import load_datalist

    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(args.dataset_dir) if args.dataset_dir else write_demo_dataset(
            Path(tmp) / "data", num_cases=args.cases, size=args.spatial_size, val_fraction=0.25, seed=3
        )  # fmt: skip
        train_images = sum(item.get("split") == "train" for item in load_datalist(dataset))
        epochs: dict[int, list[float]] = {1: [], args.processes: []}
        for repeat in range(args.repeats):
            for processes in epochs:
                out = Path(tmp) / f"run{repeat}_{processes}"
                out.mkdir()
                epochs[processes].extend(_run(args, dataset, out, processes)[1:])

    rows = {
        str(processes): {
            "threads_per_process": max(1, (os.cpu_count() or 1) // processes),
            "batch_per_process": args.batch_size // processes,
            "epoch_s": [round(s, 3) for s in seconds],
            "images_per_s": round(train_images / statistics.median(seconds), 2),
        }
        for processes, seconds in epochs.items()
    }
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {**vars(args), "training_images": train_images},
        "processes": rows,
        "speedup": round(rows[str(args.processes)]["images_per_s"] / rows["1"]["images_per_s"], 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
