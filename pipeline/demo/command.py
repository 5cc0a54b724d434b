"""``pipeline-demo``: write the synthetic demo slices, or with ``--dicom`` the demo CT study.

The slices come with label maps of the right lung, the left lung and the heart (the bundles' default demo data), or
with ``--binary`` with binary lung masks. ``datasets/make_demo.py`` calls the same function.

    pipeline-demo --out datasets/demo_ct --num_cases 160 --size 256 --seed 0
    pipeline-demo --out datasets/demo_lungs --binary
    pipeline-demo --dicom datasets/demo_dicom --size 256 --num_slices 24 --seed 0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline.demo.slices import write_demo_dataset
from pipeline.demo.study import write_demo_study

__all__ = ["demo_command", "demo_main"]


def demo_main(argv: list[str] | None = None) -> Path:
    """Parse the command line, write the dataset (or the DICOM study) and print where it went.

    Args:
        argv: command-line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The dataset (or study) folder.
    """
    parser = argparse.ArgumentParser(
        description="Write the synthetic chest-CT demo dataset, or with --dicom the demo DICOM study."
    )
    parser.add_argument("--out", type=Path, default=Path("datasets/demo_ct"), help="output folder")
    parser.add_argument("--num_cases", type=int, default=160, help="number of slices")
    parser.add_argument("--size", type=int, default=256, help="slice height and width in pixels (at least 64)")
    parser.add_argument("--val_fraction", type=float, default=0.2, help="fraction of cases in the val split")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    parser.add_argument(
        "--binary",
        action="store_true",
        help="write binary lung masks with a pairs.csv (one structure) instead of label maps of the right lung, the "
        "left lung and the heart with a dataset.json",
    )
    parser.add_argument(
        "--dicom",
        type=Path,
        metavar="OUT",
        help="write the synthetic two-series CT study (plus a scout image) as DICOM to OUT instead of the 2D dataset",
    )
    parser.add_argument("--num_slices", type=int, default=24, help="with --dicom: axial slices per series")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.dicom is not None:
        try:
            root = write_demo_study(args.dicom, size=args.size, num_slices=args.num_slices, seed=args.seed)
        except (ValueError, FileExistsError) as e:
            parser.exit(2, f"error: {e}\n")
        print(f"Wrote the demo DICOM study to {root.resolve()} in {time.perf_counter() - start:.1f} s")
        return root
    try:
        root = write_demo_dataset(
            args.out,
            num_cases=args.num_cases,
            size=args.size,
            val_fraction=args.val_fraction,
            seed=args.seed,
            label_maps=not args.binary,
        )
    except (ValueError, FileExistsError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"Wrote {args.num_cases} demo cases to {root.resolve()} in {time.perf_counter() - start:.1f} s")
    return root


def demo_command() -> int:
    """``pipeline-demo``: :func:`demo_main` with an exit status."""
    demo_main()
    return 0
