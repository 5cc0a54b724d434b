"""Turn a downloaded public dataset into a checked datalist with seeded cross-validation folds (datasets/README.md).

The recipe reads the files as the publisher distributes them (it never downloads), checks every pair with the
pre-flight check and writes ``OUT/datalist.json``; train on it with ``--dataset_dir OUT/datalist.json [--fold N]``.
Run from the repository root::

    python datasets/prepare.py kaggle_lung --source ~/data/finding-lungs-in-ct-data --out data/kaggle_lung
    python datasets/prepare.py kvasir --source ~/data/Kvasir-SEG --out data/kvasir --num_folds 5 --seed 0
    python datasets/prepare.py montgomery --source ~/data/MontgomerySet --out data/montgomery
    python datasets/prepare.py folder --source ~/data/mine --out data/mine --mask_dir labels --mask_suffix _mask
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

try:
    from pipeline.data.preflight import DatasetCheckError
    from pipeline.data.recipes import RECIPES, prepare_dataset
    from pipeline.outputs import SEGMENTS
except ImportError:  # not installed with ``pip install -e .``: use the checkout this script lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipeline.data.preflight import DatasetCheckError
    from pipeline.data.recipes import RECIPES, prepare_dataset
    from pipeline.outputs import SEGMENTS


def main(argv: list[str] | None = None) -> Path:
    """Parse the command line, run the recipe and print where the datalist went.

    Args:
        argv: command-line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The path of the datalist.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    main()
