"""Memory of inference over a folder of 2D images against the number of images: it must stream (flat), not grow.

Each measurement runs in a fresh process: it writes N synthetic int16 CT slices as TIFF (cheap shapes), runs the unet
bundle's ``inference.json`` runner over the folder (random weights: memory does not depend on what the model learnt)
and samples the process's resident memory every 0.2 s while it runs. It reports the peak (``ru_maxrss``), the
resident memory at each quarter of the run, and the seconds per image. Run from the repository root::

    python tests/benchmarks/bench_inference_memory.py --counts 200 2000 --size 512
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _write_images(folder: Path, count: int, size: int) -> None:
    import tifffile

    folder.mkdir(parents=True)
    rows, cols = np.mgrid[0:size, 0:size]
    for i in range(count):
        centre = size / 2 + 20 * np.sin(i)
        lung = ((rows - centre) ** 2 + (cols - size / 3) ** 2) < (size / 5) ** 2
        tifffile.imwrite(folder / f"s{i:05d}.tif", np.where(lung, -850, 40).astype(np.int16) + (i % 7))


def measure(count: int, size: int, overlap: bool) -> dict:
    """One measurement, in this process (``--child``)."""
    import torch
    from monai.bundle import ConfigParser

    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        _write_images(images, count, size)
        parser = ConfigParser()
        parser.read_config(REPO / "bundles" / "unet" / "inference.json")
        parser.read_meta(REPO / "bundles" / "unet" / "metadata.json")
        weights = Path(tmp) / "model.pt"
        torch.save(parser.get_parsed_content("network_def").state_dict(), weights)
        parser.update({"input": str(images), "output_dir": f"{tmp}/out", "checkpoint": str(weights), "device": "cpu"})
        parser.update({"overlap_io": overlap})
        runner = parser.get_parsed_content("runner")
        samples: list[tuple[float, float]] = []
        done = threading.Event()
        start = time.perf_counter()

        def sample() -> None:
            while not done.wait(0.2):
                samples.append((time.perf_counter() - start, _rss_mib()))

        before = _rss_mib()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        summary = runner.run()
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    quarters = [round(float(np.median([r for t, r in samples if q * seconds / 4 <= t < (q + 1) * seconds / 4])), 1)
                for q in range(4)] if len(samples) >= 8 else []  # fmt: skip
    return {
        "images": count,
        "ok": summary["num_ok"],
        "overlap": overlap,
        "rss_before_run_mib": round(before, 1),
        "rss_by_quarter_mib": quarters,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds_per_image": round(seconds / count, 4),
    }


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--counts", type=int, nargs="+", default=[200, 2000], help="numbers of images to measure")
    cli.add_argument("--size", type=int, default=512, help="image side in pixels")
    cli.add_argument("--overlap", choices=["false", "true", "both"], default="both", help="overlap_io setting(s)")
    cli.add_argument("--child", nargs=2, metavar=("IMAGES", "OVERLAP"), help=argparse.SUPPRESS)
    args = cli.parse_args()
    if args.child:
        print(json.dumps(measure(int(args.child[0]), args.size, args.child[1] == "true")))
        return
    overlaps = ["false", "true"] if args.overlap == "both" else [args.overlap]
    rows = []
    for count in args.counts:
        for overlap in overlaps:
            child = [sys.executable, __file__, "--size", str(args.size), "--child", str(count), overlap]
            result = subprocess.run(child, capture_output=True, text=True, check=True, cwd=REPO)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(
        json.dumps(
            {
                "machine": {"platform": platform.platform(), "python": platform.python_version()},
                "settings": {"bundle": "unet", "image_size": args.size, "device": "cpu"},
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
