"""Peak memory of a training run's cached data against the number of slices: compact cache (float16 / uint8) vs float32,
and the training cache on disk.

Each measurement runs in a fresh process: it writes N synthetic 256 x 256 int16 CT slices with masks (cheap shapes,
not the demo phantom), builds the bundle's training and validation datasets as ``monai.bundle run training`` would,
and reports the process's peak resident memory and the bytes the caches hold. ``float32`` overrides the bundle's
cache types to float32, as the bundles cached before. ``disk`` keeps the training cache on disk (``--cache disk``,
``PersistentDataset``; the validation set stays in memory) and draws every training item once, which writes the
cache, then once more, which reads it back; it reports the cache's bytes on disk and both passes' seconds. Run from the
repository root::

    python tests/benchmarks/bench_memory.py --sizes 2000 20000 --float32_sizes 2000 5000 --disk_sizes 2000 20000
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _write_dataset(root: Path, count: int, size: int) -> Path:
    import tifffile
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows, cols = np.mgrid[0:size, 0:size]
    lines = ["image,mask,split"]
    for i in range(count):
        centre = size / 2 + 20 * np.sin(i)
        lung = ((rows - centre) ** 2 + (cols - size / 3) ** 2) < (size / 5) ** 2
        image = np.where(lung, -850, 40).astype(np.int16) + (i % 7)
        tifffile.imwrite(root / "images" / f"s{i:05d}.tif", image)
        Image.fromarray(lung.astype(np.uint8) * 255).save(root / "masks" / f"s{i:05d}.png")
        lines.append(f"s{i:05d}.tif,s{i:05d}.png,{'val' if i % 5 == 0 else 'train'}")
    (root / "pairs.csv").write_text("\n".join(lines) + "\n")
    return root


def _cache_bytes(dataset: object) -> int:
    total = 0
    for item in getattr(dataset, "_cache", None) or []:
        for value in item.values():
            total += value.numel() * value.element_size() if hasattr(value, "element_size") else 0
    return total


def measure(count: int, size: int, cache: str) -> dict:
    """One measurement, in this process (``--child``)."""
    from monai.bundle import ConfigParser

    with tempfile.TemporaryDirectory() as tmp:
        dataset_dir = _write_dataset(Path(tmp) / "data", count, size)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundles" / "unet" / "train.json"))
        overrides = {"dataset_dir": str(dataset_dir), "spatial_size": [size, size], "num_workers": 2,
                     "output_dir": str(Path(tmp) / "out"), "train#dataset#progress": False,
                     "validate#dataset#progress": False}  # fmt: skip
        overrides["cache"] = "disk" if cache == "disk" else "memory"
        if cache == "float32":
            overrides |= {"train#cache_types#dtype": "$torch.float32", "validate#cache_types#dtype": "$torch.float32"}
        parser.update(overrides)
        start = time.perf_counter()
        train, val = parser.get_parsed_content("train#dataset"), parser.get_parsed_content("validate#dataset")
        disk: dict[str, float] = {}
        if cache == "disk":
            for name in ("write_pass_seconds", "read_pass_seconds"):
                tick = time.perf_counter()
                for i in range(len(train)):
                    train[i]
                disk[name] = round(time.perf_counter() - tick, 1)
            files = list((Path(tmp) / "out" / "cache").rglob("*.pt"))
            disk["disk_cache_mib"] = round(sum(f.stat().st_size for f in files) / 2**20, 1)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "slices": count,
        "cache": cache,
        "train_items": len(train),
        "val_items": len(val),
        "cache_mib": round((_cache_bytes(train) + _cache_bytes(val)) / 2**20, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "rss_growth_mib": round((peak - before) / 1024, 1),
        "cache_seconds": round(seconds, 1),
        **disk,
    }


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--sizes", type=int, nargs="+", default=[500, 2000], help="numbers of slices to measure")
    cli.add_argument("--size", type=int, default=256, help="slice side in pixels (also the training size)")
    cli.add_argument("--extrapolate", type=int, default=20000, help="slices to extrapolate the fitted line to")
    cli.add_argument(
        "--float32_sizes",
        type=int,
        nargs="+",
        help="slices to measure the float32 cache at (default --sizes): keep "
        "them within the machine's memory, the fit extrapolates",
    )
    cli.add_argument("--disk_sizes", type=int, nargs="*", default=[], help="slices to measure the disk cache at")
    cli.add_argument("--child", nargs=2, metavar=("SLICES", "CACHE"), help=argparse.SUPPRESS)
    args = cli.parse_args()
    if args.child:
        print(json.dumps(measure(int(args.child[0]), args.size, args.child[1])))
        return
    rows = []
    plan = [(n, "compact") for n in args.sizes] + [(n, "float32") for n in (args.float32_sizes or args.sizes)]
    plan += [(n, "disk") for n in args.disk_sizes]
    for count, cache in plan:
        command = [sys.executable, __file__, "--size", str(args.size), "--child", str(count), cache]
        output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    fits = {}
    for cache in ("compact", "float32"):
        points = [(r["slices"], r["peak_rss_mib"]) for r in rows if r["cache"] == cache]
        if len(points) >= 2:
            slope, intercept = np.polyfit(*zip(*points, strict=True), 1)
            fits[cache] = {
                "mib_per_slice": round(float(slope), 4),
                "base_mib": round(float(intercept), 1),
                f"peak_gib_at_{args.extrapolate}": round(float(slope * args.extrapolate + intercept) / 1024, 2),
            }
    machine = {"platform": platform.platform(), "cpus": __import__("os").cpu_count()}
    print(json.dumps({"machine": machine, "size": args.size, "rows": rows, "linear_fit": fits, "target_gib": 24}))


if __name__ == "__main__":
    main()
