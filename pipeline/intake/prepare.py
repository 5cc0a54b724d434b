"""``pipeline-prepare``: a public dataset, as its publisher distributes it -> a checked datalist with folds.

``datasets/prepare.py`` calls the same function.

    pipeline-prepare kaggle_lung --source ~/data/finding-lungs-in-ct-data --out data/kaggle_lung
    pipeline-prepare kaggle_lung_sides --source ~/data/finding-lungs-in-ct-data --out data/kaggle_lung_sides
    pipeline-prepare kvasir --source ~/data/Kvasir-SEG --out data/kvasir --num_folds 5 --seed 0
    pipeline-prepare montgomery --source ~/data/MontgomerySet --out data/montgomery [--label_maps]
    pipeline-prepare structures --source ~/data/chest --out data/chest --image_dir images \\
        --structure "right lung=masks/right" --structure "left lung=masks/left" --structure "heart=masks/heart"
    pipeline-prepare folder --source ~/data/mine --out data/mine --mask_dir labels --mask_suffix _mask --segment tissue
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.intake.dataset_recipes import MISSING_MASK_POLICIES, RECIPES, prepare_dataset, recipe_options
from pipeline.intake.preflight import DatasetCheckError
from pipeline.segments import SEGMENTS

__all__ = ["prepare_command", "prepare_main"]

_RECIPE_OPTIONS = set().union(*(recipe_options(name) for name in RECIPES))


def prepare_main(argv: list[str] | None = None) -> Path:
    """Parse the command line, run the recipe and print where the datalist went.

    Recipe options (``--image_dir``, ``--structure``, ``--label_maps``, ...) are passed only when given, so a recipe
    given an option it does not take stops with an error rather than ignoring it.

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
    parser.add_argument("--out", type=Path, required=True, help="folder for datalist.json (and the masks it writes)")
    parser.add_argument("--num_folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    parser.add_argument("--empty_masks", choices=("ignore", "warn", "error"), default="warn")
    parser.add_argument(
        "--segment",
        choices=sorted(SEGMENTS),
        help="what binary masks hold, written into the datalist and from there into models and DICOM SEG "
        "(default: the recipe's; folder: tissue). Recipes that write label maps name their structures instead",
    )
    keep = argparse.SUPPRESS  # a recipe option reaches the recipe only when given
    folder = parser.add_argument_group("the folder and structures recipes")
    folder.add_argument("--image_dir", default=keep, help="image folder inside --source (default images)")
    folder.add_argument("--mask_dir", default=keep, help="folder: mask folder inside --source (default masks)")
    folder.add_argument(
        "--mask_suffix", default=keep, help="folder: what a mask's name adds to its image's, e.g. _mask"
    )
    structures = parser.add_argument_group("the structures recipe: one folder of binary masks per structure")
    structures.add_argument(
        "--structure",
        action="append",
        default=keep,
        metavar="NAME=FOLDER",
        help="a structure and its mask folder inside --source, once per structure; label values 1..K follow the "
        "order given, and where masks overlap the structure given LATER wins. Masks pair with images by name "
        "without suffix; they may be PNG, TIFF or (noisy) JPEG, binarised on load. Label maps are written as "
        "uint8 PNG to <out>/labels",
    )
    structures.add_argument(
        "--missing_masks",
        choices=MISSING_MASK_POLICIES,
        default=keep,
        help="an image without one structure's mask: error (default; every one is named) or empty (that structure "
        "is left out of its label map, with a warning)",
    )
    montgomery = parser.add_argument_group("the montgomery recipe")
    montgomery.add_argument(
        "--label_maps",
        action="store_true",
        default=keep,
        help="keep the lungs apart: label maps with right lung 1 and left lung 2 (the patient's sides; where the "
        "masks overlap the left lung wins) instead of one merged lung mask",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    options = {name: value for name, value in vars(args).items() if name in _RECIPE_OPTIONS}
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
