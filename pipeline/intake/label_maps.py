"""Label maps from the masks a dataset publishes: one binary mask per structure merged, or lungs split into sides.

A dataset recipe (:mod:`pipeline.intake.dataset_recipes`) that writes label maps has a :class:`LabelPlan`: the
structures' names (label values 1..K in order), how one case's label map is made, and the rule, in words, that the
datalist records. :func:`overlap_plan` stacks one binary mask per structure (a later structure wins where masks
overlap); :func:`lung_sides_plan` splits a binary lung mask of an axial CT slice into right and left lung by
connected components (:func:`split_lung_sides`). :func:`write_label_maps` makes and writes every case's label map and
logs what was decided.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipeline.intake.datalist import _stem
from pipeline.io import LoadSlice
from pipeline.outputs import write_label_png
from pipeline.transforms import AIR_HU, BinarizeMask

__all__ = [
    "LABEL_DIR",
    "LabelMap",
    "LabelPlan",
    "lung_sides_plan",
    "overlap_plan",
    "split_lung_sides",
    "without_sources",
    "write_label_maps",
]

logger = logging.getLogger(__name__)

LABEL_DIR = "labels"
"""Folder of ``out`` that receives the label maps a recipe writes."""
_REMARKS_SHOWN = 50  # per-case remarks logged in a recipe's summary; the counts cover every case


@dataclass
class LabelMap:
    """One case's label map and what making it decided.

    Attributes:
        array: ``(H, W)`` uint8 label map: 0 the background, 1..K the structures.
        counts: what this case adds to the dataset's tally in the datalist (pixels where two structures' masks
            overlap, by pair; or the kind of lung slice it is).
        remarks: decisions worth a line in the recipe's summary (touching lungs cut apart, pieces dropped, masks
            overlapping); empty for a plain case.
        warnings: findings that suggest the source is not what the recipe assumes (a "right lung" on the image's
            right), logged as warnings.
    """

    array: np.ndarray
    counts: Counter[str] = field(default_factory=Counter)
    remarks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LabelPlan:
    """How a recipe turns each case's checked source masks into a label map.

    Attributes:
        names: the structures, label values 1..K in this order; written as the datalist's ``labels``.
        make: ``item -> LabelMap``, from an item of the recipe's ``find`` (``"image"`` and ``"label"`` or
            ``"labels"`` paths).
        note: the datalist key that states how the label maps were made (``label_overlap``, ``label_sides``).
        rule: that statement, in words.
        counted: what the summed :attr:`LabelMap.counts` are (``pixels``, ``slices``).
    """

    names: tuple[str, ...]
    make: Callable[[dict], LabelMap]
    note: str
    rule: str
    counted: str


def _stack_masks(item: dict, names: Sequence[str]) -> LabelMap:
    """The label map of one image's structure masks (each binarised as the loader does), values 1..K in the order of
    ``names``; a pixel inside several masks takes the value of the last of them."""
    loader, binarize = LoadSlice(palette="indices"), BinarizeMask()
    label: np.ndarray | None = None
    made = LabelMap(np.zeros((0, 0), np.uint8))
    for value, (name, path) in enumerate(zip(names, item["labels"], strict=True), start=1):
        if path is None:
            continue
        mask = np.asarray(binarize(loader(path)))[0] > 0
        label = np.zeros(mask.shape, np.uint8) if label is None else label
        taken = np.bincount(label[mask], minlength=value)  # this mask's pixels already given to an earlier structure
        for earlier in np.flatnonzero(taken[1:]) + 1:
            pair = f"{name} over {names[earlier - 1]}"
            made.counts[pair] += int(taken[earlier])
            made.remarks.append(f"{pair}: {int(taken[earlier])} px")
        label[mask] = value
        made.warnings += _side_warning(name, mask)
    if label is None:
        raise ValueError(f"{item['image']}: no mask of any structure.")
    made.array = label
    return made


def _side_warning(name: str, mask: np.ndarray) -> list[str]:
    """A warning when a mask named the right (left) lung lies in the image's right (left) half: sides are the
    patient's, whose right is on the image's left in a PA radiograph and in axial CT as displayed."""
    words = name.lower().replace("_", " ").replace("-", " ").split()
    if len(words) != 2 or words[0] not in ("right", "left") or words[1] != "lung" or not mask.any():
        return []
    on_image_right = float(np.nonzero(mask)[1].mean()) > (mask.shape[1] - 1) / 2
    if on_image_right == (words[0] == "left"):
        return []
    half, expected = ("right", "left") if on_image_right else ("left", "right")
    return [
        f"the {name} mask lies in the image's {half} half: sides are the patient's, whose {words[0]} lung appears on "
        f"the image's {expected} (PA radiograph, axial CT); check which side the masks name"
    ]


def overlap_plan(names: Sequence[str]) -> LabelPlan:
    order = " over ".join(reversed(names)) if len(names) > 1 else "one structure, no overlap"
    rule = f"one binary mask per structure, values 1..{len(names)} in the order given; where masks overlap, the "
    rule += f"structure given later wins: {order}"
    return LabelPlan(tuple(names), partial(_stack_masks, names=tuple(names)), "label_overlap", rule, "pixels")


_MIN_PIECE = 0.02  # a piece under this share of the largest one is a speck (an airway, a stray pixel)
_MIN_SIDE = 0.2  # a piece across the midline is two touching lungs when the cut leaves this share on each side
_CUT_BAND = 1 / 8  # the cut between touching lungs is sought within this share of the width either side of centre


def _body(image: np.ndarray) -> np.ndarray | None:
    """The patient's body on an axial CT slice in Hounsfield units: the largest connected region above -500 HU with
    its holes (lungs, airways) filled; ``None`` when nothing lies below -500 (not a CT slice in HU)."""
    tissue = image > AIR_HU
    if tissue.all() or not tissue.any():
        return None
    regions, _ = ndimage.label(tissue)
    largest = int(np.argmax(np.bincount(regions.ravel())[1:])) + 1
    return ndimage.binary_fill_holes(regions == largest)


def split_lung_sides(mask: np.ndarray, image: np.ndarray | None = None) -> LabelMap:
    """Split a binary lung mask of an axial CT slice into right lung (1) and left lung (2) by connected components.

    Axial CT is displayed as if seen from the feet (radiological convention): the patient's right lies on the image's
    left. The mask's 8-connected pieces are sorted out in four steps:

    1. with ``image`` in Hounsfield units, a piece lying mostly outside the body (the largest region above -500 HU,
       holes filled) is air around the patient that the source mask includes: dropped;
    2. a piece smaller than 2 % of the largest remaining one (a speck, a piece of airway) is dropped;
    3. a piece that crosses the vertical midline is cut at the column where it has the fewest pixels, sought within
       an eighth of the width either side of the midline (ties: the column nearest the midline). When each side of
       the cut keeps at least 20 % of the piece, the lungs touch and the two sides become two pieces (a straight cut:
       the few pixels where the lungs meet go by column); otherwise the piece is one lung that reaches over the
       midline, kept whole;
    4. each piece whose centroid lies in the image's left half is right lung, in the right half left lung. The
       largest piece on each side is that lung; further pieces (at least 2 %) join the lung on their side.

    The sides assume a supine patient shown as scanned. A prone patient (spine at the top of the image) in the
    scanner's frame has the patient's left on the image's left, and gets the sides swapped: nothing here detects
    that (the Kaggle set has a few such slices; see datasets/README.md).

    Args:
        mask: ``(H, W)`` binary mask (any non-zero value is lung).
        image: the slice, ``(H, W)``, in Hounsfield units; ``None`` (or a slice with nothing below -500) skips step 1.

    Returns:
        The label map, ``counts`` with one of ``two lungs apart``, ``touching lungs split``, ``one lung``,
        ``no lung`` (and ``specks dropped``, ``air outside the body dropped`` where it applies), and ``remarks`` on
        every decision that is not plain.

    Raises:
        ValueError: a mask that is not 2D, or an image of another shape.
    """
    mask = np.asarray(mask) != 0
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}.")
    if image is not None and np.shape(image) != mask.shape:
        raise ValueError(f"image is {np.shape(image)} but the mask is {mask.shape}.")
    width = mask.shape[1]
    midline = (width - 1) / 2  # in column indices: columns 0..W/2-1 lie in the image's left half
    made = LabelMap(np.zeros(mask.shape, np.uint8))
    pieces, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)
    keep = list(range(1, count + 1))
    body = None if image is None else _body(np.asarray(image, dtype=np.float32))
    if body is not None:
        inside = np.bincount(pieces.ravel(), weights=body.ravel(), minlength=count + 1)
        outside = [i for i in keep if inside[i] < sizes[i] / 2]
        if outside:
            made.counts["air outside the body dropped"] += 1
            made.remarks.append(
                f"dropped {len(outside)} piece(s) of {int(sizes[outside].sum())} px lying outside the body "
                "(air around the patient in the source mask)"
            )
        keep = [i for i in keep if i not in outside]
    largest = max((int(sizes[i]) for i in keep), default=0)
    specks = [i for i in keep if sizes[i] < _MIN_PIECE * largest]
    if specks:
        made.counts["specks dropped"] += 1
        made.remarks.append(
            f"dropped {len(specks)} speck(s) of {int(sizes[specks].sum())} px (each under {_MIN_PIECE:.0%} of the "
            "largest piece)"
        )
    parts, touching = [], False
    for i in (i for i in keep if i not in specks):
        piece = pieces == i
        column_counts = piece.sum(axis=0)
        columns = np.flatnonzero(column_counts)
        if columns[0] < midline < columns[-1]:
            band = np.arange(width)
            band = band[(np.abs(band - midline) <= _CUT_BAND * width) & (band > columns[0]) & (band <= columns[-1])]
            band = band[np.argsort(np.abs(band - midline), kind="stable")]  # ties go to the column nearest the midline
            cut = int(band[np.argmin(column_counts[band])])
            left = piece.copy()
            left[:, cut:] = False
            if min(int(left.sum()), int(sizes[i]) - int(left.sum())) >= _MIN_SIDE * sizes[i]:
                parts += [left, piece & ~left]
                touching = True
                made.remarks.append(
                    f"the lungs touch: one piece of {int(sizes[i])} px cut at column {cut}, where it has "
                    f"{int(column_counts[cut])} px"
                )
                continue
        parts.append(piece)
    sides = Counter()
    for part in parts:
        value = 1 if np.nonzero(part)[1].mean() < midline else 2
        made.array[part] = value
        sides[value] += 1
    if not parts:
        kind = "no lung"
        made.remarks.append("no lung left")
    elif len(sides) == 1:
        kind = "one lung"
        lung, half = ("right", "left") if next(iter(sides)) == 1 else ("left", "right")
        made.remarks.append(f"one lung only: the {lung} lung (the image's {half} half)")
    else:
        kind = "touching lungs split" if touching else "two lungs apart"
    extra = len(parts) - len(sides)
    if extra > 0:
        made.remarks.append(f"{extra} more piece(s) joined the lung on their side")
    made.counts[kind] += 1
    return made


_SIDES_RULE = (
    "sides from the connected components of each binary lung mask (8-connected), the patient's right on the image's "
    "left (axial CT of a supine patient, radiological display): pieces mostly outside the body (air around the "
    f"patient) and pieces under {_MIN_PIECE:.0%} of the largest are dropped; a piece across the vertical midline with "
    f"at least {_MIN_SIDE:.0%} on each side of its narrowest column near the midline is two touching lungs, cut at "
    "that column; a piece whose centroid lies in the image's left half is right lung (1), in the right half left "
    "lung (2)"
)


def _lung_sides(item: dict) -> LabelMap:
    image = np.asarray(LoadSlice()(item["image"]))
    mask = np.asarray(BinarizeMask()(LoadSlice(palette="indices")(item["label"])))[0]
    return split_lung_sides(mask, image[0] if image.shape[0] == 1 else None)


def lung_sides_plan() -> LabelPlan:
    return LabelPlan(("right lung", "left lung"), _lung_sides, "label_sides", _SIDES_RULE, "slices")


def without_sources(item: dict) -> dict:
    return {k: v for k, v in item.items() if k not in ("labels", "findings")}


def write_label_maps(items: list[dict], plan: LabelPlan, out: Path, recipe: str) -> tuple[list[dict], Counter]:
    """Make each item's label map by ``plan``, write it to ``out/labels/<image stem>.png`` and log a summary of the
    counts and of every case that was not plain."""
    written, counts, remarks, warnings = [], Counter(), [], []
    for item in items:
        made = plan.make(item)
        path = write_label_png(made.array, out / LABEL_DIR / (_stem(Path(item["image"])) + ".png"))
        written.append(without_sources(item) | {"label": str(path)})
        counts.update(made.counts)
        remarks += [f"{item['name']}: {remark}" for remark in made.remarks]
        warnings += [f"{item['name']}: {warning}" for warning in made.warnings]
    tally = ", ".join(f"{key} {value}" for key, value in sorted(counts.items())) or "nothing to count"
    lines = [
        f"{recipe}: {len(written)} label maps ({', '.join(plan.names)}) written to {out / LABEL_DIR}; "
        f"{plan.counted}: {tally}; {len(remarks)} remark(s)"
    ]
    lines += [f"  {remark}" for remark in remarks[:_REMARKS_SHOWN]]
    if len(remarks) > _REMARKS_SHOWN:
        lines.append(f"  ... and {len(remarks) - _REMARKS_SHOWN} more")
    logger.info("\n".join(lines))
    for warning in warnings[:_REMARKS_SHOWN]:
        logger.warning(warning)
    return written, counts
