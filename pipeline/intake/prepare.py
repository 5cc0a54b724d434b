"""``pipeline-prepare``: a public dataset, as its publisher distributes it -> a checked datalist with folds.

``datasets/prepare.py`` calls the same function.

    pipeline-prepare kaggle_lung --source ~/data/finding-lungs-in-ct-data --out data/kaggle_lung
    pipeline-prepare kvasir --source ~/data/Kvasir-SEG --out data/kvasir --num_folds 5 --seed 0
    pipeline-prepare montgomery --source ~/data/MontgomerySet --out data/montgomery
    pipeline-prepare folder --source ~/data/mine --out data/mine --mask_dir labels --mask_suffix _mask --segment tissue
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.intake.dataset_recipes import RECIPES, prepare_dataset
from pipeline.intake.preflight import DatasetCheckError
from pipeline.segments import SEGMENTS

__all__ = ["prepare_command", "prepare_main"]


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
