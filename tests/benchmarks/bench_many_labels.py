"""Memory and time of training and inference against the number of structures: the one-hot targets and probabilities.

A model of ``K`` structures caches ``K + 1`` one-hot target channels per training slice (soft after resizing, float16
like the image) and computes ``K + 1`` probability channels per predicted pixel. For each ``K`` this writes a synthetic
dataset of ``--count`` grey images with ``K`` discs (label values 1..K; ``K = 1`` is a binary dataset), trains the unet
bundle on it for ``--epochs`` epochs with the memory cache, then runs inference on the same images, each command in a
fresh process; it reports the peak resident memory of each process, its wall time, the cache estimate that chooses
between memory and disk (``pipeline.intake.estimated_cache_bytes``) and the bytes one cached item takes. Prints one JSON
object::

    python tests/benchmarks/bench_many_labels.py --structures 1 3 12 24 --count 64 --spatial_size 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.inference.input_fit import EXIT_FLAGGED

REPO = Path(__file__).resolve().parents[2]


def write_dataset(root: Path, structures: int, count: int, size: int, seed: int = 0) -> Path:
    """``count`` images with ``structures`` discs on a grid, their label maps and a ``dataset.json`` (a ``pairs.csv``
    layout of binary masks for one structure)."""
    rng = np.random.default_rng(seed)
    grid = int(np.ceil(np.sqrt(structures)))
    cell = size / grid
    rows, cols = np.mgrid[:size, :size]
    binary = structures == 1
    (root / "images").mkdir(parents=True)
    (root / ("masks" if binary else "labels")).mkdir()
    items = []
    for k in range(count):
        label = np.zeros((size, size), np.uint8)
        for place in range(structures):
            row, col = (np.array(divmod(place, grid)) + 0.5) * cell + rng.uniform(-0.1, 0.1, 2) * cell
            label[(rows - row) ** 2 + (cols - col) ** 2 < (cell * rng.uniform(0.25, 0.4)) ** 2] = place + 1
        image = 20 + 200 * label / structures + rng.normal(0, 5, label.shape)
        name = f"c{k:03d}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / name)
        Image.fromarray(label).save(root / ("masks" if binary else "labels") / name)
        items.append({"image": f"images/{name}", "label": f"{'masks' if binary else 'labels'}/{name}"})
    if not binary:
        labels = {"0": "background", **{str(v): f"structure {v}" for v in range(1, structures + 1)}}
        split = max(1, count // 5)
        datalist = {"labels": labels, "training": items[split:], "validation": items[:split]}
        (root / "dataset.json").write_text(json.dumps(datalist))
    return root


def _run(command: list[str], log: Path) -> dict[str, float]:
    """Run ``command`` under GNU time: its peak resident memory (MiB) and wall seconds."""
    start = time.perf_counter()
    with open(log, "w") as out:
        timed = ["/usr/bin/time", "-f", "maxrss_kib %M", *command]
        result = subprocess.run(timed, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    lines = log.read_text().splitlines()
    if result.returncode not in (0, EXIT_FLAGGED):  # a briefly trained model's results may be flagged
        raise SystemExit(f"{' '.join(command[:6])} ... failed; see {log}:\n" + "\n".join(lines[-20:]))
    kib = next(int(line.split()[1]) for line in reversed(lines) if line.startswith("maxrss_kib"))
    return {"peak_rss_mib": round(kib / 1024, 1), "seconds": round(seconds, 1)}


def _cached_item_bytes(structures: int, size: int) -> int:
    """Bytes of one training item after the bundle's cached preprocessing (image and target, float16)."""
    import torch
    from monai.transforms import CastToTyped, Resized

    from pipeline.segments import structures_from_labels
    from pipeline.transforms import LabelToChannelsd

    label = torch.randint(0, structures + 1, (1, 512, 512)).float()
    item = {"image": torch.rand(1, 512, 512), "label": label}
    if structures > 1:
        parsed = structures_from_labels({str(v): f"structure {v}" for v in range(1, structures + 1)})
        item = LabelToChannelsd("label", structures=parsed)(item)
    item = Resized(["image", "label"], (size, size), mode="bilinear", anti_aliasing=True)(item)
    item = CastToTyped(["image", "label"], dtype=torch.float16)(item)
    return int(sum(t.numel() * t.element_size() for t in item.values()))


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--structures", type=int, nargs="+", default=[1, 3, 12, 24])
    cli.add_argument("--count", type=int, default=64, help="images per dataset")
    cli.add_argument("--spatial_size", type=int, default=256)
    cli.add_argument("--epochs", type=int, default=2)
    cli.add_argument("--work_dir", type=Path, default=None, help="default: a temporary folder, removed afterwards")
    args = cli.parse_args()

    from pipeline.intake.cache import estimated_cache_bytes

    size = args.spatial_size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        for structures in args.structures:
            root = work / f"k{structures}"
            data = write_dataset(root / "data", structures, args.count, size)
            common = ["--dataset_dir", str(data), "--modality", "OT", "--spatial_size", f"[{size},{size}]"]
            train = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
                     str(REPO / "bundles" / "unet" / "train.json"), *common, "--epochs", str(args.epochs),
                     "--cache", "memory", "--output_dir", str(root / "out")]  # fmt: skip
            trained = _run(train, root / "train.log")
            infer = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file",
                     str(REPO / "bundles" / "unet" / "inference.json"), "--input", str(data / "images"),
                     "--checkpoint", str(root / "out" / "latest" / "models" / "model.pt"),
                     "--output_dir", str(root / "inference")]  # fmt: skip
            inferred = _run(infer, root / "inference.log")
            channels = structures + 1 if structures > 1 else 1
            rows.append(
                {
                    "structures": structures,
                    "out_channels": channels,
                    "cached_item_bytes": _cached_item_bytes(structures, size),
                    "cache_estimate_mib_per_1000_slices": round(
                        estimated_cache_bytes(1000, (size, size), 1, label_channels=channels) / 2**20, 1
                    ),
                    "train": trained,
                    "inference": inferred,
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    print(
        json.dumps(
            {
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                "settings": {"count": args.count, "spatial_size": size, "epochs": args.epochs, "bundle": "unet"},
                "results": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
