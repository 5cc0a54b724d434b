"""Dataset recipes: turn a public dataset, as its publisher distributes it, into a checked datalist with k folds.

The user downloads and unpacks the data; a recipe never downloads. Each recipe finds the image/mask pairs in the
source layout, the pre-flight check (:func:`pipeline.intake.preflight`) reads every pair, and a decathlon-style
``datalist.json`` is written with a seeded fold for each case, which ``--fold N`` in the bundles picks up:

* ``kaggle_lung``: Kaggle "Finding and Measuring Lungs in CT Data" (``2d_images/`` + ``2d_masks/``, int16 HU TIFF
  slices with 0/255 masks), or the same files already in ``images/`` + ``masks/`` with an optional ``pairs.csv``
  (``filename,split``) whose split is kept as the default train/val split;
* ``kvasir``: Kvasir-SEG (``Kvasir-SEG/images`` + ``masks``) or HyperKvasir's ``segmented-images``: RGB JPEGs of
  varying size with 3-channel JPEG masks that carry compression noise (binarised at 127 on load);
* ``montgomery``: the Montgomery County chest X-ray set (``CXR_png/`` + ``ManualMask/leftMask`` and ``rightMask``):
  the left and right lung masks are merged into one mask per image, written as PNG next to the datalist;
* ``folder``: any folder of images and masks, with the mask file named like the image plus an optional suffix
  (``a.png`` with ``a_mask.png``).

Paths in the datalist are relative to its folder, so the datalist and (for Montgomery) the merged masks can sit
anywhere, for example ``data/kvasir/datalist.json`` beside the source.
"""

from __future__ import annotations

import csv
import inspect
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import write_json
from pipeline.intake.datalist import _by_stem, _normalise_split, _slices, _stem, assign_folds, find_folder_pairs
from pipeline.intake.preflight import preflight
from pipeline.io import LoadSlice
from pipeline.outputs import write_mask_png
from pipeline.segments import SEGMENTS
from pipeline.transforms import BinarizeMask

__all__ = ["RECIPES", "Recipe", "prepare_dataset"]

logger = logging.getLogger(__name__)

DATALIST_NAME = "datalist.json"


def _first_dir(source: Path, candidates: Sequence[str], what: str) -> Path:
    for name in candidates:
        if (source / name).is_dir():
            return source / name
    raise ValueError(f"{source}: no {what} folder; expected one of {', '.join(candidates)}.")


def _kaggle_lung(source: Path) -> list[dict]:
    image_dir = _first_dir(source, ("2d_images", "images"), "image")
    mask_dir = _first_dir(source, ("2d_masks", "masks"), "mask")
    items = find_folder_pairs(image_dir, mask_dir)
    pairs_csv = source / "pairs.csv"
    if pairs_csv.is_file():
        with pairs_csv.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and not ({"filename"} <= rows[0].keys() or {"image"} <= rows[0].keys()):
            raise ValueError(f"{pairs_csv}: expected a 'filename' or an 'image' column, got {list(rows[0])}.")
        splits = {
            row.get("image") or row["filename"]: _normalise_split(row.get("split") or "", f"{pairs_csv} line {i}")
            for i, row in enumerate(rows, start=2)
        }
        for item in items:
            item["split"] = splits.get(item["name"], "")
    return items


def _kvasir(source: Path) -> list[dict]:
    for root in (source, source / "Kvasir-SEG", source / "segmented-images"):
        if (root / "images").is_dir() and (root / "masks").is_dir():
            return find_folder_pairs(root / "images", root / "masks")
    raise ValueError(f"{source}: expected images/ and masks/ (Kvasir-SEG/ or segmented-images/ of HyperKvasir).")


def _montgomery(source: Path) -> list[dict]:
    root = source / "MontgomerySet" if (source / "MontgomerySet").is_dir() else source
    image_dir = _first_dir(root, ("CXR_png",), "image")
    mask_dirs = [_first_dir(root, (f"ManualMask/{side}Mask",), f"{side}-lung mask") for side in ("left", "right")]
    images = _by_stem(_slices(image_dir))
    # every image with both of its masks (a missing one is named by the pre-flight check), then masks without image
    items = [
        {"image": str(path), "labels": [str(folder / path.name) for folder in mask_dirs], "name": path.name}
        for path in images.values()
    ]
    for folder in mask_dirs:
        items += [{"image": None, "label": str(p), "name": p.name} for p in _slices(folder) if _stem(p) not in images]
    return items


def _merge_masks(items: list[dict], out: Path) -> list[dict]:
    """Replace each item's ``"labels"`` by one mask, their union, written to ``out/masks/<image stem>.png``."""
    loader, binarize = LoadSlice(), BinarizeMask()
    merged_items = []
    for item in items:
        if "labels" not in item:
            merged_items.append(item)
            continue
        masks = [np.asarray(binarize(loader(path)))[0] > 0 for path in item["labels"]]
        merged = np.logical_or.reduce(masks)
        path = write_mask_png(merged, out / "masks" / (_stem(Path(item["image"])) + ".png"))
        merged_items.append({k: v for k, v in item.items() if k != "labels"} | {"label": str(path)})
    return merged_items


def _folder(source: Path, image_dir: str = "images", mask_dir: str = "masks", mask_suffix: str = "") -> list[dict]:
    images, masks = source / image_dir, source / mask_dir
    for folder in (images, masks):
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder (set image_dir / mask_dir to the folders of images and masks).")
    return find_folder_pairs(images, masks, mask_suffix)


@dataclass(frozen=True)
class Recipe:
    """A dataset recipe.

    Attributes:
        name: what ``datasets/prepare.py`` calls it.
        title: the dataset, in words.
        find: ``(source, **options) -> items``: the pairs in the source layout. An item may carry ``"labels"``
            (several masks of one image, as Montgomery's left and right lungs) instead of ``"label"``; they are
            checked one by one, then merged into one mask written next to the datalist.
        overrides: the bundle settings this data needs (``--modality``, ``--in_channels``), written into the
            datalist as a hint for the training command.
        segment: what the masks hold (a key of :data:`pipeline.segments.SEGMENTS`), written into the datalist;
            training records it in the model card and inference writes it into DICOM SEG and the reports.
    """

    name: str
    title: str
    find: Callable[..., list[dict]]
    overrides: dict[str, object]
    segment: str


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "kaggle_lung",
            'Kaggle "Finding and Measuring Lungs in CT Data" (2D)',
            _kaggle_lung,
            {"modality": "CT"},
            "lung",
        ),
        Recipe(
            "kvasir",
            "Kvasir-SEG / HyperKvasir segmented polyps",
            _kvasir,
            {"modality": "ES", "in_channels": 3},
            "polyp",
        ),
        Recipe(
            "montgomery", "Montgomery County chest X-rays (left + right lungs)", _montgomery, {"modality": "XR"}, "lung"
        ),
        Recipe("folder", "any folder of images and masks", _folder, {}, "tissue"),
    )
}


def _relative(path: str | None, root: Path) -> str | None:
    # resolved on both sides: a symlinked folder followed by ".." would otherwise point elsewhere
    return None if path is None else os.path.relpath(os.path.realpath(path), os.path.realpath(root))


def prepare_dataset(
    recipe: str,
    source: str | os.PathLike,
    out: str | os.PathLike,
    num_folds: int = 5,
    seed: int = 0,
    empty_masks: str = "warn",
    segment: str | None = None,
    **options: str,
) -> Path:
    """Find the pairs of a dataset, check every one of them, and write ``out/datalist.json`` with k seeded folds.

    Args:
        recipe: a key of :data:`RECIPES`.
        source: the unpacked dataset as the publisher distributes it.
        out: folder for ``datalist.json`` (and any files the recipe writes); created.
        num_folds: folds for cross-validation. Default 5.
        seed: seed of the fold assignment. Default 0.
        empty_masks: the pre-flight check's policy for empty masks (``ignore``, ``warn``, ``error``).
        segment: what the masks hold, a key of :data:`pipeline.segments.SEGMENTS`; default the recipe's.
        options: recipe options (``folder``: ``image_dir``, ``mask_dir``, ``mask_suffix``).

    Returns:
        The path of the datalist.

    Raises:
        ValueError: an unknown recipe or option, or a source folder that does not follow the layout.
        pipeline.intake.DatasetCheckError: when the pre-flight check finds fatal problems (every one is listed).
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}.")
    segment = segment or RECIPES[recipe].segment
    if segment not in SEGMENTS:
        raise ValueError(f"unknown segment {segment!r}; choose one of {sorted(SEGMENTS)}.")
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise ValueError(f"source {source} is not a folder.")
    accepted = set(inspect.signature(RECIPES[recipe].find).parameters) - {"source"}
    if set(options) - accepted:
        raise ValueError(
            f"recipe {recipe!r} does not take the options {sorted(set(options) - accepted)}; "
            f"it takes {sorted(accepted) or 'none'}."
        )
    items = RECIPES[recipe].find(source, **options)
    if not items:
        raise ValueError(f"{source}: no images found for the {recipe} recipe.")
    # the pre-flight check reads every source pair (each of an image's masks when several are merged) before
    # anything is written
    pairs = [{**item, "label": label} for item in items for label in item.get("labels", [item.get("label")])]
    preflight(pairs, empty_masks=empty_masks)
    items = _merge_masks(items, out)
    folds = assign_folds(len(items), num_folds, seed)
    entries = []
    for item, fold in zip(items, folds, strict=True):
        entry = {"image": _relative(item["image"], out), "label": _relative(item["label"], out), "fold": fold}
        if item.get("split"):
            entry["split"] = item["split"]
        entries.append(entry)
    counts = np.bincount(folds, minlength=num_folds).tolist()
    datalist = {
        "name": RECIPES[recipe].title,
        "recipe": recipe,
        "bundle_overrides": RECIPES[recipe].overrides,
        "segment": SEGMENTS[segment].to_config(),
        "num_folds": num_folds,
        "seed": seed,
        "fold_sizes": counts,
        "training": entries,
    }
    out.mkdir(parents=True, exist_ok=True)
    path = write_json(datalist, out / DATALIST_NAME)
    logger.info("%s: %d cases in %d folds %s, written to %s", recipe, len(entries), num_folds, counts, path)
    return path
