"""Dataset recipes: turn a public dataset, as its publisher distributes it, into a checked datalist with k folds.

The user downloads and unpacks the data; a recipe never downloads. Each recipe finds the image/mask pairs in the
source layout, the pre-flight check (:func:`pipeline.intake.preflight`) reads every pair, and a decathlon-style
``datalist.json`` is written with a seeded fold for each case, which ``--fold N`` in the bundles picks up:

* ``kaggle_lung``: Kaggle "Finding and Measuring Lungs in CT Data" (``2d_images/`` + ``2d_masks/``, int16 HU TIFF
  slices with 0/255 masks), or the same files already in ``images/`` + ``masks/`` with an optional ``pairs.csv``
  (``filename,split``) whose split is kept as the default train/val split;
* ``kaggle_lung_sides``: the same slices with each binary lung mask split into right lung (1) and left lung (2) by
  connected components (:func:`pipeline.intake.label_maps.split_lung_sides`), written as label maps;
* ``kvasir``: Kvasir-SEG (``Kvasir-SEG/images`` + ``masks``) or HyperKvasir's ``segmented-images``: RGB JPEGs of
  varying size with 3-channel JPEG masks that carry compression noise (binarised at 127 on load);
* ``montgomery``: the Montgomery County chest X-ray set (``CXR_png/`` + ``ManualMask/leftMask`` and ``rightMask``):
  the left and right lung masks are merged into one mask per image, written as PNG next to the datalist; with
  ``label_maps=True`` they are kept apart instead, right lung 1 and left lung 2, as the ``structures`` recipe does;
* ``structures``: one folder of binary masks per structure (as JSRT/SCR and Montgomery publish them), merged into
  one label map per image, values 1..K in the order the structures are given. Where masks overlap, the structure
  given later wins;
* ``folder``: any folder of images and masks, with the mask file named like the image plus an optional suffix
  (``a.png`` with ``a_mask.png``).

A recipe that writes label maps records its structures in the datalist as a decathlon ``labels`` map (``{"0":
"background", "1": "right lung", ...}``) and how it made them under ``label_overlap`` or ``label_sides``; the others
record one ``segment``. Paths in the datalist are relative to its folder, so the datalist and the masks a recipe
writes can sit anywhere, for example ``data/kvasir/datalist.json`` beside the source.
"""

from __future__ import annotations

import csv
import inspect
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import write_json
from pipeline.intake.datalist import _by_stem, _normalise_split, _slices, _stem, assign_folds, find_folder_pairs
from pipeline.intake.label_maps import (
    LabelMap,
    LabelPlan,
    lung_sides_plan,
    overlap_plan,
    split_lung_sides,
    without_sources,
    write_label_maps,
)
from pipeline.intake.preflight import DatasetCheckError, Finding, check_dataset
from pipeline.io import LoadSlice
from pipeline.outputs import write_mask_png
from pipeline.segments import SEGMENTS, structures_from_labels
from pipeline.transforms import BinarizeMask

__all__ = ["RECIPES", "LabelMap", "LabelPlan", "Recipe", "prepare_dataset", "recipe_options", "split_lung_sides"]

logger = logging.getLogger(__name__)

DATALIST_NAME = "datalist.json"
MISSING_MASK_POLICIES = ("error", "empty")


def _first_dir(source: Path, candidates: Sequence[str], what: str) -> Path:
    for name in candidates:
        if (source / name).is_dir():
            return source / name
    raise ValueError(f"{source}: no {what} folder; expected one of {', '.join(candidates)}.")


def _shown(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)


def _binary_masks() -> LabelPlan | None:
    """The plan of a recipe that writes no label map: its datalist points at binary masks."""
    return None


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


def _structure_items(
    image_dir: Path, folders: Sequence[tuple[str, Path]], source: Path, missing_masks: str = "error"
) -> list[dict]:
    """One item per image whose ``"labels"`` are its mask in each structure's folder, in order, matched by name
    without suffix (``images/a.png`` with ``heart/a.png`` or ``heart/a.tif``).

    A structure's missing mask is ``None`` in ``"labels"`` and a finding in ``"findings"``: fatal, or with
    ``missing_masks="empty"`` a warning (the structure is then absent from that label map). A mask without an image
    becomes an item of its own, which the pre-flight check names.
    """
    if missing_masks not in MISSING_MASK_POLICIES:
        raise ValueError(f"missing_masks must be one of {MISSING_MASK_POLICIES}, got {missing_masks!r}.")
    images = _by_stem(_slices(image_dir))
    masks = [_by_stem(_slices(folder)) for _, folder in folders]
    items = []
    for stem in sorted(images):
        labels = [str(found[stem]) if stem in found else None for found in masks]
        findings = [
            Finding(
                _shown(images[stem], source),
                f"no {name} mask in {_shown(folder, source)} (no file named {stem} with an image suffix)"
                + ("; that structure is left empty" if missing_masks == "empty" else ""),
                missing_masks == "error",
            )
            for (name, folder), label in zip(folders, labels, strict=True)
            if label is None
        ]
        items.append({"image": str(images[stem]), "labels": labels, "name": images[stem].name, "findings": findings})
    for found in masks:
        items += [{"image": None, "label": str(p), "name": p.name} for stem, p in found.items() if stem not in images]
    return items


def _parse_structures(structure: Sequence[str] | str) -> list[tuple[str, str]]:
    """``["right lung=masks/right", ...]`` -> ``[("right lung", "masks/right"), ...]``, checked as a labels map."""
    given = [structure] if isinstance(structure, str) else list(structure)
    if not given:
        raise ValueError('the structures recipe needs --structure "NAME=FOLDER" for each structure, in label order.')
    parsed = []
    for entry in given:
        name, _, folder = str(entry).partition("=")
        if not name.strip() or not folder.strip():
            raise ValueError(f'--structure {entry!r}: expected "NAME=FOLDER", e.g. "right lung=masks/right".')
        parsed.append((name.strip(), folder.strip()))
    if len(parsed) > 255:
        raise ValueError(f"{len(parsed)} structures do not fit in a uint8 label map (at most 255).")
    try:  # the names become the datalist's labels: the same checks
        structures_from_labels({str(i): name for i, (name, _) in enumerate(parsed, start=1)})
    except ValueError as e:
        raise ValueError(f"--structure: {e}") from e
    return parsed


def _structures(
    source: Path, structure: Sequence[str] | str = (), image_dir: str = "images", missing_masks: str = "error"
) -> list[dict]:
    images = source / image_dir
    if not images.is_dir():
        raise ValueError(f"{images}: not a folder (set image_dir to the folder of images inside the source).")
    folders = []
    for name, folder in _parse_structures(structure):
        if not (source / folder).is_dir():
            raise ValueError(f"{source / folder}: not a folder (the masks of {name!r}, given as {name}={folder}).")
        folders.append((name, source / folder))
    return _structure_items(images, folders, source, missing_masks)


def _montgomery(source: Path) -> list[dict]:
    root = source / "MontgomerySet" if (source / "MontgomerySet").is_dir() else source
    image_dir = _first_dir(root, ("CXR_png",), "image")
    # the publisher names the masks by the patient's side; the right lung appears on the image's left (PA view)
    folders = [
        (f"{side} lung", _first_dir(root, (f"ManualMask/{side}Mask",), f"{side}-lung mask"))
        for side in ("right", "left")
    ]
    return _structure_items(image_dir, folders, source)


def _folder(source: Path, image_dir: str = "images", mask_dir: str = "masks", mask_suffix: str = "") -> list[dict]:
    images, masks = source / image_dir, source / mask_dir
    for folder in (images, masks):
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder (set image_dir / mask_dir to the folders of images and masks).")
    return find_folder_pairs(images, masks, mask_suffix)


def _structures_plan(structure: Sequence[str] | str = ()) -> LabelPlan:
    return overlap_plan([name for name, _ in _parse_structures(structure)])


def _montgomery_plan(label_maps: bool = False) -> LabelPlan | None:
    return overlap_plan(("right lung", "left lung")) if label_maps else None


def _merge_masks(items: list[dict], out: Path) -> list[dict]:
    """Replace each item's ``"labels"`` by one mask, their union, written to ``out/masks/<image stem>.png``."""
    loader, binarize = LoadSlice(palette="indices"), BinarizeMask()
    merged_items = []
    for item in items:
        if "labels" not in item:
            merged_items.append(item)
            continue
        masks = [np.asarray(binarize(loader(path)))[0] > 0 for path in item["labels"] if path is not None]
        merged = np.logical_or.reduce(masks)
        path = write_mask_png(merged, out / "masks" / (_stem(Path(item["image"])) + ".png"))
        merged_items.append(without_sources(item) | {"label": str(path)})
    return merged_items


@dataclass(frozen=True)
class Recipe:
    """A dataset recipe.

    Attributes:
        name: what ``pipeline-prepare`` calls it.
        title: the dataset, in words.
        find: ``(source, **options) -> items``: the pairs in the source layout. An item may carry ``"labels"``
            (one mask per structure, as Montgomery's right and left lungs; ``None`` for a missing one) instead of
            ``"label"``, and ``"findings"`` (:class:`pipeline.intake.Finding`) for the pre-flight report; each mask is
            checked, then the masks are merged into one mask (their union) or one label map, written next to the
            datalist.
        overrides: the bundle settings this data needs (``--modality``, ``--in_channels``), written into the
            datalist as a hint for the training command.
        segment: what a binary mask holds (a key of :data:`pipeline.segments.SEGMENTS`), written into the datalist;
            training records it in the model card and inference writes it into DICOM SEG and the reports.
        label_maps: ``(**options) -> LabelPlan | None``: how the recipe writes label maps of several structures, or
            ``None`` for binary masks. It takes its own options, as ``find`` does (a recipe's options are theirs
            together).
    """

    name: str
    title: str
    find: Callable[..., list[dict]]
    overrides: dict[str, object]
    segment: str
    label_maps: Callable[..., LabelPlan | None] = _binary_masks


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
            "kaggle_lung_sides",
            'Kaggle "Finding and Measuring Lungs in CT Data" (2D), right and left lung apart by connected components',
            _kaggle_lung,
            {"modality": "CT"},
            "lung",
            lung_sides_plan,
        ),
        Recipe(
            "kvasir",
            "Kvasir-SEG / HyperKvasir segmented polyps",
            _kvasir,
            {"modality": "ES", "in_channels": 3},
            "polyp",
        ),
        Recipe(
            "montgomery",
            "Montgomery County chest X-rays (left + right lungs; apart with --label_maps)",
            _montgomery,
            {"modality": "XR"},
            "lung",
            _montgomery_plan,
        ),
        Recipe(
            "structures",
            "one folder of binary masks per structure, merged into label maps (a later structure wins overlaps)",
            _structures,
            {},
            "tissue",
            _structures_plan,
        ),
        Recipe("folder", "any folder of images and masks", _folder, {}, "tissue"),
    )
}


def _parameters(function: Callable[..., Any]) -> set[str]:
    return set(inspect.signature(function).parameters) - {"source"}


def recipe_options(recipe: str) -> set[str]:
    """The options a recipe takes (``find``'s and ``label_maps``'s keyword arguments).

    Raises:
        ValueError: an unknown recipe.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}.")
    return _parameters(RECIPES[recipe].find) | _parameters(RECIPES[recipe].label_maps)


def _relative(path: str | None, root: Path) -> str | None:
    # resolved on both sides: a symlinked folder followed by ".." would otherwise point elsewhere
    return None if path is None else os.path.relpath(os.path.realpath(path), os.path.realpath(root))


def _source_pairs(item: dict) -> list[dict]:
    """The image/mask pairs of an item for the pre-flight check: one per mask it has (an image without any: one pair
    with no mask, which the check names)."""
    if "labels" not in item:
        return [item]
    given = [label for label in item["labels"] if label is not None]
    return [{"image": item["image"], "label": label} for label in given] or [{"image": item["image"], "label": None}]


def _check_source(items: list[dict], empty_masks: str) -> None:
    """The pre-flight check of every source pair, with the findings of the recipe itself (missing masks) first.

    Raises:
        DatasetCheckError: listing every fatal problem.
    """
    report = check_dataset([pair for item in items for pair in _source_pairs(item)], empty_masks=empty_masks)
    report.findings[:0] = [finding for item in items for finding in item.get("findings", [])]
    if report.fatal:
        raise DatasetCheckError(report.summary())
    logger.info(report.summary())


def prepare_dataset(
    recipe: str,
    source: str | os.PathLike,
    out: str | os.PathLike,
    num_folds: int = 5,
    seed: int = 0,
    empty_masks: str = "warn",
    segment: str | None = None,
    **options: Any,
) -> Path:
    """Find the pairs of a dataset, check every one of them, and write ``out/datalist.json`` with k seeded folds.

    Args:
        recipe: a key of :data:`RECIPES`.
        source: the unpacked dataset as the publisher distributes it.
        out: folder for ``datalist.json`` (and any files the recipe writes); created.
        num_folds: folds for cross-validation. Default 5.
        seed: seed of the fold assignment. Default 0.
        empty_masks: the pre-flight check's policy for empty masks (``ignore``, ``warn``, ``error``).
        segment: what binary masks hold, a key of :data:`pipeline.segments.SEGMENTS`; default the recipe's. A recipe
            that writes label maps names its structures in the datalist's ``labels`` instead and takes no segment.
        options: recipe options (:func:`recipe_options`). ``folder``: ``image_dir``, ``mask_dir``,
            ``mask_suffix``. ``structures``: ``structure`` (``["NAME=FOLDER", ...]``, folders inside ``source``, in
            label order; where masks overlap the later structure wins), ``image_dir``, ``missing_masks`` (``error``,
            the default: a case without one of its masks is a fatal finding; ``empty``: that structure is left empty,
            with a warning). ``montgomery``: ``label_maps`` (``True``: right lung 1 and left lung 2 instead of their
            union).

    Returns:
        The path of the datalist.

    Raises:
        ValueError: an unknown recipe or option, or a source folder that does not follow the layout.
        pipeline.intake.DatasetCheckError: when the pre-flight check finds fatal problems (every one is listed).
    """
    accepted = recipe_options(recipe)
    if set(options) - accepted:
        raise ValueError(
            f"recipe {recipe!r} does not take the options {sorted(set(options) - accepted)}; "
            f"it takes {sorted(accepted) or 'none'}."
        )
    chosen = RECIPES[recipe]
    plan = chosen.label_maps(**{k: v for k, v in options.items() if k in _parameters(chosen.label_maps)})
    if plan is not None and segment is not None:
        raise ValueError(f"recipe {recipe!r} writes label maps, named by its structures; it takes no segment.")
    segment = segment or chosen.segment
    if segment not in SEGMENTS:
        raise ValueError(f"unknown segment {segment!r}; choose one of {sorted(SEGMENTS)}.")
    source, out = Path(source), Path(out)
    if not source.is_dir():
        raise ValueError(f"source {source} is not a folder.")
    items = chosen.find(source, **{k: v for k, v in options.items() if k in _parameters(chosen.find)})
    if not items:
        raise ValueError(f"{source}: no images found for the {recipe} recipe.")
    # every source pair (each of an image's masks when several are merged) is read before anything is written
    _check_source(items, empty_masks)
    if plan is None:
        items = _merge_masks(items, out)
    else:
        items, counts = write_label_maps(items, plan, out, recipe)
    folds = assign_folds(len(items), num_folds, seed)
    entries = []
    for item, fold in zip(items, folds, strict=True):
        entry = {"image": _relative(item["image"], out), "label": _relative(item["label"], out), "fold": fold}
        if item.get("split"):
            entry["split"] = item["split"]
        entries.append(entry)
    fold_sizes = np.bincount(folds, minlength=num_folds).tolist()
    datalist: dict[str, Any] = {"name": chosen.title, "recipe": recipe, "bundle_overrides": chosen.overrides}
    if plan is None:
        datalist["segment"] = SEGMENTS[segment].to_config()
    else:
        datalist["labels"] = {"0": "background", **{str(v): name for v, name in enumerate(plan.names, start=1)}}
        datalist[plan.note] = {"rule": plan.rule, plan.counted: dict(sorted(counts.items()))}
    datalist |= {"num_folds": num_folds, "seed": seed, "fold_sizes": fold_sizes, "training": entries}
    out.mkdir(parents=True, exist_ok=True)
    path = write_json(datalist, out / DATALIST_NAME)
    logger.info("%s: %d cases in %d folds %s, written to %s", recipe, len(entries), num_folds, fold_sizes, path)
    return path
