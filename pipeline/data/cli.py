"""The dataset commands: ``pipeline-prepare`` (a public dataset -> a checked datalist with folds) and ``pipeline-demo``
(the synthetic demo data). ``datasets/prepare.py`` and ``datasets/make_demo.py`` call the same functions.

    pipeline-prepare kaggle_lung --source ~/data/finding-lungs-in-ct-data --out data/kaggle_lung
    pipeline-prepare kvasir --source ~/data/Kvasir-SEG --out data/kvasir --num_folds 5 --seed 0
    pipeline-prepare montgomery --source ~/data/MontgomerySet --out data/montgomery
    pipeline-prepare folder --source ~/data/mine --out data/mine --mask_dir labels --mask_suffix _mask --segment tissue
    pipeline-demo --out datasets/demo_ct --num_cases 160 --size 256 --seed 0
    pipeline-demo --dicom datasets/demo_dicom --size 256 --num_slices 24 --seed 0
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from pipeline.data.demo import write_demo_dataset
from pipeline.data.demo_dicom import write_demo_study
from pipeline.data.preflight import DatasetCheckError
from pipeline.data.recipes import RECIPES, prepare_dataset
from pipeline.outputs import SEGMENTS

__all__ = ["demo_command", "demo_main", "prepare_command", "prepare_main"]


def prepare_main(argv: list[str] | None = None) -> Path:
    """Parse the command line, run the recipe and print where the datalist went.

    Args:
        argv: command-line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The path of the datalist.
    """
    parser = argparse.ArgumentParser(
        description="Turn a downloaded public dataset into a checked datalist with seeded cross-validation folds."
    )
    parser.add_argument(
        "recipe", choices=sorted(RECIPES), help="; ".join(f"{r.name}: {r.title}" for r in RECIPES.values())
    )
    parser.add_argument("--source", type=Path, required=True, help="the unpacked dataset")
    parser.add_argument("--out", type=Path, required=True, help="folder for datalist.json (and merged masks)")
    parser.add_argument("--num_folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    parser.add_argument("--empty_masks", choices=("ignore", "warn", "error"), default="warn")
    parser.add_argument(
        "--segment",
        choices=sorted(SEGMENTS),
        help="what the masks hold, written into the datalist and from there into models and DICOM SEG "
        "(default: the recipe's; folder: tissue)",
    )
    folder = parser.add_argument_group("the folder recipe")
    folder.add_argument("--image_dir", default="images", help="image folder inside --source (default images)")
    folder.add_argument("--mask_dir", default="masks", help="mask folder inside --source (default masks)")
    folder.add_argument("--mask_suffix", default="", help="what a mask's name adds to its image's, e.g. _mask")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    options = (
        {"image_dir": args.image_dir, "mask_dir": args.mask_dir, "mask_suffix": args.mask_suffix}
        if args.recipe == "folder"
        else {}
    )
    try:
        path = prepare_dataset(
            args.recipe, args.source, args.out, args.num_folds, args.seed, args.empty_masks, args.segment, **options
        )
    except (ValueError, DatasetCheckError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"Wrote {path}; train with --dataset_dir {path} [--fold N]")
    return path


def prepare_command() -> int:
    """``pipeline-prepare``: :func:`prepare_main` with an exit status."""
    prepare_main()
    return 0


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
            args.out, num_cases=args.num_cases, size=args.size, val_fraction=args.val_fraction, seed=args.seed
        )
    except (ValueError, FileExistsError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"Wrote {args.num_cases} demo cases to {root.resolve()} in {time.perf_counter() - start:.1f} s")
    return root


def demo_command() -> int:
    """``pipeline-demo``: :func:`demo_main` with an exit status."""
    demo_main()
    return 0
