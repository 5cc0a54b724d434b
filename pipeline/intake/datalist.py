"""Dataset intake: turn a dataset folder or a datalist JSON into a list of image/label items, and split it.

Two layouts are accepted (the same as ``../shared/data/lung_ct`` and MONAI's decathlon datalists):

* a folder with ``images/`` and ``masks/`` whose files pair up by name (``images/a.tif`` with ``masks/a.tif``;
  the suffixes may differ, ``images/a.jpg`` pairs with ``masks/a.png``). An optional ``pairs.csv`` with a
  ``filename`` (or ``image`` and ``mask``) column and an optional ``split`` column fixes the pairing and the split;
* a decathlon-style JSON file (``{"training": [{"image": ..., "label": ...}], "validation": [...]}``), given as
  the path itself or found as ``dataset.json`` / ``datalist.json`` in the folder. Paths are relative to the
  JSON file's folder.

Nothing is dropped here: an image without a mask (or a mask without an image) is returned with the missing
partner set to ``None`` so that the pre-flight check (:mod:`pipeline.intake.preflight`) reports it by name.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.demo import LABELS as DEMO_LABELS
from pipeline.intake.volumes import expand_volumes
from pipeline.segments import SEGMENTS, SegmentDescription, structures_from_config, structures_from_labels

__all__ = [
    "DATALIST_NAMES",
    "IMAGE_SUFFIXES",
    "assign_folds",
    "check_bundle_overrides",
    "dataset_structures",
    "load_datalist",
    "select_split",
    "split_datalist",
]

logger = logging.getLogger(__name__)

DATALIST_NAMES = ("dataset.json", "datalist.json")
"""File names looked for in ``dataset_dir`` when it holds a decathlon-style datalist."""

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".dcm", ".dicom", ".nii", ".nii.gz")
"""Suffixes that count as slices when a folder is scanned (other files, such as README.txt, are ignored)."""

TRAIN, VAL = "train", "val"
_SPLIT_ALIASES = {"train": TRAIN, "training": TRAIN, "val": VAL, "valid": VAL, "validation": VAL}


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_slice(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.lower().endswith(IMAGE_SUFFIXES)


def _slices(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_slice(p))


def _by_stem(paths: Iterable[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in paths:
        if _stem(path) in found:
            raise ValueError(f"{path.parent}: {found[_stem(path)].name} and {path.name} have the same name; keep one.")
        found[_stem(path)] = path
    return found


def find_folder_pairs(
    image_dir: Path,
    mask_dir: Path,
    mask_suffix: str = "",
) -> list[dict]:
    """Pair ``image_dir/<stem>.<ext>`` with ``mask_dir/<stem><mask_suffix>.<ext>`` (the extensions may differ).

    Images without a mask and masks without an image are kept with the partner set to ``None``, so that the
    pre-flight check names them. With ``mask_suffix``, files in ``mask_dir`` without it are left out with a warning.

    Args:
        image_dir: folder of images.
        mask_dir: folder of masks (may be the same folder when ``mask_suffix`` tells masks apart).
        mask_suffix: what the mask's stem adds to the image's, e.g. ``"_mask"``.

    Returns:
        Items with ``"image"``, ``"label"`` and ``"name"``, sorted by name without suffix.

    Raises:
        ValueError: when two files in one folder have the same name but for the suffix (``a.png`` and ``a.tif``).
    """
    masks = _by_stem(p for p in _slices(mask_dir) if _stem(p).endswith(mask_suffix))
    images = _by_stem(
        p for p in _slices(image_dir) if not (mask_suffix and image_dir == mask_dir and _stem(p) in masks)
    )
    if mask_suffix and image_dir != mask_dir:
        ignored = [p.name for p in _slices(mask_dir) if not _stem(p).endswith(mask_suffix)]
        if ignored:
            logger.warning(
                "%s: %d file(s) without the suffix %r are not used, e.g. %s",
                mask_dir,
                len(ignored),
                mask_suffix,
                ignored[0],
            )
    by_image = {stem: masks.get(stem + mask_suffix) for stem in images}
    paired = {m for m in by_image.values() if m is not None}
    items = [
        {"image": str(images[stem]), "label": str(mask) if mask else None, "name": images[stem].name}
        for stem, mask in by_image.items()
    ]
    items += [{"image": None, "label": str(m), "name": m.name} for m in masks.values() if m not in paired]
    return sorted(items, key=lambda item: _stem(Path(item["name"])))


def _normalise_split(value: str, where: str) -> str:
    key = value.strip().lower()
    if key == "":
        return ""
    if key not in _SPLIT_ALIASES:
        raise ValueError(f"{where}: split value {value!r} is not one of {sorted(_SPLIT_ALIASES)}.")
    return _SPLIT_ALIASES[key]


def _from_json(path: Path) -> list[dict]:
    try:
        content = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the datalist JSON ({e}).") from e
    if not isinstance(content, dict) or "training" not in content:
        raise ValueError(f"{path}: a datalist needs a 'training' list of {{'image': ..., 'label': ...}} items.")
    items = []
    for section, split in (("training", ""), ("validation", VAL)):
        for i, entry in enumerate(content.get(section, [])):
            if not isinstance(entry, dict) or "image" not in entry:
                raise ValueError(f"{path}: item {i} of '{section}' has no 'image' key.")
            for key in ("image", "label"):
                value = entry.get(key)
                if (key == "image" or value is not None) and not (isinstance(value, str) and value.strip()):
                    raise ValueError(
                        f"{path}: item {i} of '{section}': '{key}' must be a file path (a non-empty string), "
                        f"got {value!r}."
                    )
            item = {
                "image": str(path.parent / entry["image"]),
                "label": str(path.parent / entry["label"]) if entry.get("label") else None,
            }
            entry_split = entry.get("split", split)
            item["split"] = _normalise_split(str(entry_split), f"{path} item {i}") if entry_split else split
            for key, value in entry.items():
                item.setdefault(key, value)
            items.append(item)
    return items


def _read_pairs_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 CSV.") from e
    except csv.Error as e:
        raise ValueError(f"{path}: not a readable CSV file ({e}).") from e
    if rows and not ({"filename"} <= rows[0].keys() or {"image", "mask"} <= rows[0].keys()):
        raise ValueError(f"{path}: expected a 'filename' column or 'image' and 'mask' columns, got {list(rows[0])}.")
    return rows


def _csv_field(row: dict[str | None, str | None], column: str, path: Path, line: int) -> str:
    """A row's ``image`` or ``mask`` file name (its own column, else ``filename``), or an error naming the line."""
    value = row.get(column) or row.get("filename")
    if not value or not value.strip():
        raise ValueError(
            f"{path} line {line}: no {column} file name (column '{column}' or 'filename' is empty or missing). "
            "Give every row a file name, or remove the row."
        )
    return value.strip()


def _from_folder(root: Path) -> list[dict]:
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir() or not mask_dir.is_dir():
        raise ValueError(
            f"{root}: expected 'images/' and 'masks/' folders with matching file names, or a datalist JSON "
            f"({' or '.join(DATALIST_NAMES)})."
        )
    pairs_csv = root / "pairs.csv"
    if pairs_csv.is_file():
        items = []
        for i, row in enumerate(_read_pairs_csv(pairs_csv), start=2):
            image_name = _csv_field(row, "image", pairs_csv, i)
            mask_name = _csv_field(row, "mask", pairs_csv, i)
            image, mask = image_dir / image_name, mask_dir / mask_name
            if not image.exists() and not mask.exists():
                raise ValueError(
                    f"{pairs_csv} line {i}: neither images/{image_name} nor masks/{mask_name} exists. Fix the name, "
                    "or remove the row."
                )
            split = _normalise_split(row.get("split") or "", f"{pairs_csv} line {i}")
            items.append(
                {
                    "image": str(image) if image.exists() else None,
                    "label": str(mask) if mask.exists() else None,
                    "split": split,
                    "name": image_name,
                }
            )
        listed = {_stem(Path(item["name"])) for item in items}
        unlisted = [p for p in _slices(image_dir) if _stem(p) not in listed]
        if unlisted:
            logger.warning(
                "%s: %d image(s) not listed in pairs.csv are not used, e.g. %s",
                pairs_csv.name,
                len(unlisted),
                unlisted[0].name,
            )
        return items
    return [{**item, "split": ""} for item in find_folder_pairs(image_dir, mask_dir)]


def load_datalist(dataset_dir: str | Path) -> list[dict]:
    """Read the image/label items of a dataset.

    Args:
        dataset_dir: a folder with ``images/`` and ``masks/`` (and optionally ``pairs.csv``), a folder holding a
            ``dataset.json``/``datalist.json``, or the path of a decathlon-style JSON datalist.

    Returns:
        One dict per case with ``"image"`` and ``"label"`` paths (``None`` where the partner file is missing),
        ``"split"`` (``"train"``, ``"val"`` or ``""`` when the source does not fix it) and ``"name"``.

    Raises:
        ValueError: when the folder or file does not exist or follows neither layout, naming the path, or when two
            files in ``images/`` (or ``masks/``) differ only in suffix.
    """
    path = Path(dataset_dir)
    if not path.exists():
        raise ValueError(f"dataset_dir {path} does not exist.")
    if path.is_file():
        items = _from_json(path)
    else:
        json_file = next((path / n for n in DATALIST_NAMES if (path / n).is_file()), None)
        items = _from_json(json_file) if json_file is not None else _from_folder(path)
    for item in items:
        if "name" not in item:
            item["name"] = Path(item["image"] or item["label"]).name
    if not items:
        raise ValueError(f"{path}: no image/mask pairs found (looked for {', '.join(IMAGE_SUFFIXES)} files).")
    return items


def _datalist_content(dataset_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """The datalist JSON of ``dataset_dir`` (given, or found in the folder) and its content; ``{}`` where there is no
    readable one (``load_datalist`` is the one that reports an unreadable datalist)."""
    path = Path(dataset_dir)
    if path.is_dir():
        path = next((path / n for n in DATALIST_NAMES if (path / n).is_file()), path)
    if not (path.is_file() and path.suffix == ".json"):
        return path, {}
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return path, {}
    return path, content if isinstance(content, dict) else {}


def dataset_segment(dataset_dir: str | Path, default: str | Mapping[str, Any] = "lung") -> dict[str, Any]:
    """What a dataset's masks segment: its datalist's ``"segment"`` (written by the recipes), else ``default``.

    Args:
        dataset_dir: the run's ``dataset_dir``; only a datalist JSON (given, or found in the folder) can carry one. A
            folder that does not exist (the demo data before its first run) gives ``default``.
        default: the bundle's segment: a name in :data:`pipeline.segments.SEGMENTS`, or a dict with ``label``,
            ``category``, ``property_type`` and ``color``.

    Returns:
        The segment as a dict with every key (the datalist's keys over ``default``'s).

    Raises:
        ValueError: naming the datalist, when its ``segment`` is malformed.
    """
    if isinstance(default, str):
        if default not in SEGMENTS:
            raise ValueError(f"unknown segment {default!r}; choose one of {sorted(SEGMENTS)} or give a dict")
        default = SEGMENTS[default].to_config()
    path, content = _datalist_content(dataset_dir)
    given = content.get("segment") or {}
    try:
        if not isinstance(given, Mapping):
            raise ValueError(f"segment must be a dict with label, category, property_type and color, got {given!r}")
        return SegmentDescription.from_config({**dict(default), **given}).to_config()
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e


def dataset_structures(
    dataset_dir: str | Path,
    labels: Mapping[Any, Any] | None = None,
    segment: Mapping[str, Any] | None = None,
    demo_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """What a run's masks hold: one entry per structure, with its label value, name, SNOMED CT codes and colour.

    In order of precedence: ``labels`` (the ``--labels`` override, for a dataset without a datalist), the datalist's
    decathlon-style ``labels`` map, else one structure of value 1 that ``segment`` describes (binary masks: the
    datalist's ``segment``, written by the recipes, or the bundle's default). The demo folder holds the demo's
    structures (:data:`pipeline.demo.LABELS`) whether or not it has been generated yet: the bundles generate it on
    first use, after the config has been read.

    Args:
        dataset_dir: the run's ``dataset_dir``; only a datalist JSON (given, or found in the folder) has labels.
        labels: label value -> name, e.g. ``{"1": "right lung", "2": "left lung"}``; value 0 is the background.
        segment: the binary case's description (:func:`dataset_segment`).
        demo_dir: the bundle's demo folder (``@demo_dir``).

    Returns:
        :meth:`pipeline.segments.Structure.to_config` of each structure, by value.

    Raises:
        ValueError: naming the datalist (or ``--labels``), when a labels map is malformed.
    """
    if labels:
        try:
            structures = structures_from_labels(labels)
        except ValueError as e:
            raise ValueError(f"--labels: {e}") from e
    elif demo_dir is not None and os.path.realpath(dataset_dir) == os.path.realpath(demo_dir):
        structures = structures_from_labels(DEMO_LABELS)
    else:
        path, content = _datalist_content(dataset_dir)
        given = content.get("labels")
        try:
            structures = structures_from_labels(given) if given else structures_from_config(None, segment)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
    return [structure.to_config() for structure in structures]


def check_bundle_overrides(dataset_dir: str | Path, **settings: object) -> list[str]:
    """Warn where a recipe's datalist asks for bundle settings (``bundle_overrides``) that the run does not use.

    A Kvasir datalist asks for ``--modality ES --in_channels 3``. The bundles take those by default
    (:func:`pipeline.intake.dataset_modality`, :func:`pipeline.intake.dataset_in_channels`); a command line that
    overrides them otherwise (``--modality CT``) would train on windowed grey images without any error. This makes
    the mismatch visible.

    Args:
        dataset_dir: the run's ``dataset_dir`` (only a datalist JSON, given or found in the folder, is looked at).
        settings: the run's values, e.g. ``modality="CT", in_channels=1``.

    Returns:
        One message per mismatch (also logged as a warning); empty when none or when there is no datalist.
    """
    path, content = _datalist_content(dataset_dir)
    wanted = content.get("bundle_overrides") or {}
    messages = [
        f"{path.name} asks for --{key} {value} but this run uses {settings[key]!r}"
        for key, value in wanted.items()
        if key in settings and settings[key] != value
    ]
    for message in messages:
        logger.warning(message)
    return messages


def assign_folds(num_items: int, num_folds: int = 5, seed: int = 0) -> list[int]:
    """Seeded k-fold assignment: a fold index for each of ``num_items`` items, fold sizes differing by at most one.

    Args:
        num_items: number of items.
        num_folds: number of folds, at least 2 and at most ``num_items``. Default 5.
        seed: seed of the shuffle; the same seed and count give the same folds on any machine. Default 0.

    Returns:
        ``folds[i]`` in ``range(num_folds)`` for item ``i``.

    Raises:
        ValueError: when ``num_folds`` is below 2 or above ``num_items``.
    """
    if not 2 <= num_folds <= num_items:
        raise ValueError(f"num_folds must be between 2 and the number of items ({num_items}), got {num_folds}.")
    order = np.random.default_rng(seed).permutation(num_items)
    folds = [0] * num_items
    for rank, index in enumerate(order):
        folds[int(index)] = rank % num_folds
    return folds


def _fold_split(items: Sequence[dict], fold: int, num_folds: int, seed: int) -> dict[str, list[dict]]:
    given = [item.get("fold") for item in items]
    if all(f is None for f in given):
        folds = assign_folds(len(items), num_folds, seed)
    elif any(f is None for f in given):
        missing = next(item for item in items if item.get("fold") is None)
        raise ValueError(f"{missing.get('name')}: some items have a 'fold' and this one has none; give all or none.")
    else:
        folds = [int(f) for f in given]
        num_folds = max(folds) + 1
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in 0..{num_folds - 1} ({num_folds} folds), got {fold}.")
    return {
        TRAIN: [item for item, f in zip(items, folds, strict=True) if f != fold],
        VAL: [item for item, f in zip(items, folds, strict=True) if f == fold],
    }


def split_datalist(
    items: Sequence[dict],
    val_fraction: float = 0.2,
    seed: int = 0,
    fold: int | None = None,
    num_folds: int = 5,
) -> dict[str, list[dict]]:
    """Split items into training and validation sets, by the source's split or by cross-validation fold.

    Without ``fold``, a split fixed by the source (``pairs.csv``'s ``split`` column, a datalist's ``validation``
    section or ``split`` keys) is honoured; a seeded shuffle puts ``round(val_fraction * N)`` of the other items (at
    least one) in validation, so the same seed and data give the same split on any machine.

    With ``fold``, every item takes part in k-fold cross-validation and the fixed split is ignored: fold ``fold``
    validates and the others train. Items carry their fold as a ``"fold"`` key when a dataset recipe wrote the
    datalist (``datasets/prepare.py``); otherwise :func:`assign_folds` assigns ``num_folds`` folds with ``seed``.

    Args:
        items: the output of :func:`load_datalist`.
        val_fraction: share of unsplit items that go to validation, in (0, 1). Default 0.2.
        seed: seed of the shuffle. Default 0.
        fold: the validation fold for cross-validation, or ``None``. Default ``None``.
        num_folds: number of folds when the items carry none. Default 5.

    Returns:
        ``{"train": [...], "val": [...]}``.

    Raises:
        ValueError: when ``val_fraction`` or ``fold`` is out of range, when only some items have a fold, or when
            either set would be empty.
    """
    if fold is not None:
        fixed = _fold_split(items, int(fold), num_folds, seed)
    else:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
        fixed = {TRAIN: [i for i in items if i.get("split") == TRAIN], VAL: [i for i in items if i.get("split") == VAL]}
        free = [i for i in items if not i.get("split")]
        if free:
            order = np.random.default_rng(seed).permutation(len(free))
            n_val = 0 if fixed[VAL] else max(1, round(val_fraction * len(free)))
            fixed[VAL] += [free[k] for k in sorted(order[:n_val])]
            fixed[TRAIN] += [free[k] for k in sorted(order[n_val:])]
    for name, subset in fixed.items():
        if not subset:
            raise ValueError(f"the {name} split is empty ({len(items)} items in all); add items or change the split.")
    return {name: expand_volumes(subset) for name, subset in fixed.items()}


def select_split(items: Sequence[dict], splits: Mapping[str, Sequence[dict]], split: str) -> list[dict]:
    """The items a command works on: a split of :func:`split_datalist` (``train`` or ``val``), or ``all`` of them
    (3D volumes as their slices, :func:`pipeline.intake.volumes.expand_volumes`).

    Raises:
        ValueError: for another ``split``, naming the choices.
    """
    if split == "all":
        return expand_volumes(items)
    if split not in splits:
        raise ValueError(f"--split {split!r}: use one of {', '.join([*splits, 'all'])}")
    return list(splits[split])
