"""Embedded demo dataset: synthetic chest-CT-like axial slices with label maps of the lungs and the heart.

The generator imitates the intensity statistics of the Kaggle "Finding and Measuring Lungs in CT Data" slices (int16
TIFF in Hounsfield units) so that a freshly cloned repository can train and evaluate a bundle without downloading
anything. The default dataset (:func:`ensure_demo_dataset`, ``pipeline-demo``) holds three structures: uint8 label
maps of the right lung (1), the left lung (2) and the heart (3), named by a decathlon-style ``dataset.json``, so the
README's command trains a model of several structures. :func:`write_demo_dataset` writes, by default, the binary lung
masks in the Kaggle set's layout (uint8 {0, 1} LZW masks, ``pairs.csv`` with ``filename,split``), on which the tests
train their small one-structure models. The images are synthetic phantoms and are not suitable for any clinical
purpose.

Each slice is one random patient of :mod:`pipeline.demo.phantom` (the generator of the demo DICOM study too) cut at a
random level and scanned with a random reconstruction kernel between smooth and sharp; both kinds of dataset have the
same images.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from pipeline.atomic import GeneratedFolder
from pipeline.demo.phantom import LABELS, LEFT_LUNG, RIGHT_LUNG, ChestAnatomy, scan, scan_circle

__all__ = [
    "demo_dataset_dir",
    "ensure_demo_dataset",
    "ensure_if_demo",
    "is_complete_demo_dataset",
    "synthesize_ct_slice",
    "write_demo_dataset",
]

logger = logging.getLogger(__name__)

#: Written last into a finished dataset folder; also records the generation parameters.
MARKER_NAME = "demo_dataset.json"
#: Bumped whenever the generator's output changes, so that datasets made by an older version are regenerated.
GENERATOR_VERSION = 4
#: The datalist of a dataset of label maps; :func:`pipeline.intake.load_datalist` finds it in the folder.
DATALIST_NAME = "dataset.json"
# The generator name in the marker predates the package layout: folders written before it stay recognised.
_FOLDER = GeneratedFolder(MARKER_NAME, "pipeline.data.demo", GENERATOR_VERSION, "demo dataset")


def synthesize_ct_slice(
    rng: np.random.Generator, size: int = 256, label_maps: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise one chest-CT-like axial slice in Hounsfield units and its lung mask or label map.

    One random patient (:class:`~pipeline.demo.phantom.ChestAnatomy`) cut at a random cranio-caudal level (small
    apical lungs, mid-chest lungs around the heart, or basal crescents over the diaphragm), scanned with a random
    reconstruction kernel between smooth and sharp (:func:`~pipeline.demo.phantom.scan`) and a random scanner gain,
    as in the reference scans. Vessels inside the lungs belong to the lungs; the trachea, main bronchi, stomach gas
    and the air around the body belong to no structure.

    Args:
        rng: random generator; the same generator state gives byte-identical outputs (the same image with either
            ``label_maps``).
        size: output height and width in pixels. Defaults to 256.
        label_maps: return the label map of the right lung, the left lung and the heart
            (:data:`~pipeline.demo.phantom.LABELS`) instead of the binary lung mask. Defaults to False.

    Returns:
        ``(image, mask)``: ``image`` is an int16 array of shape ``(size, size)`` in HU (soft tissue about 40; the
        gain puts air between about -1030 and -810 and aerated lung between about -880 and -650; three slices in four
        have padding of about -1800 to -2500 outside the scan circle), ``mask`` a uint8 array of the same shape with
        values {0, 1} (the lungs), or with ``label_maps`` values in {0, 1, 2, 3} (the patient's right lung on the
        image's left).

    Raises:
        ValueError: when ``size`` is smaller than 64.
    """
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    level = float(rng.beta(1.6, 1.6))  # 0: lung apex, 1: lung base
    padded = rng.random() < 0.75
    zoom = rng.uniform(0.9, 1.0) if padded else rng.uniform(1.0, 1.1)
    hu, labels = ChestAnatomy.draw(rng, zoom).section(level, size, rng)
    sharpness, partial_volume = rng.uniform(0.0, 1.0), rng.uniform(0.6, 1.0)
    gain, offset = rng.uniform(0.82, 1.0), -rng.uniform(0.0, 30.0)  # the reference scans read air near -850 HU
    hu = scan(hu, rng, sharpness=sharpness, partial_volume=partial_volume, gain=gain, offset=offset)
    if padded:
        outside = ~scan_circle(size)
        hu[outside] = rng.uniform(-2500.0, -1800.0) + rng.uniform(30.0, 60.0) * rng.standard_normal(int(outside.sum()))
    image = np.clip(np.rint(hu), -3024, 3071).astype(np.int16)
    if label_maps:
        return image, labels
    return image, np.isin(labels, (RIGHT_LUNG, LEFT_LUNG)).astype(np.uint8)


def _case_rng(seed: int, index: int) -> np.random.Generator:
    """One independent stream per case, so case ``i`` is the same whatever ``num_cases`` is."""
    return np.random.default_rng([seed, 1, index])


def _listed_pairs(root: Path, label_maps: bool) -> list[tuple[str, str]] | None:
    """The (image, label) paths relative to ``root`` that the dataset's index lists (``dataset.json`` for label
    maps, else ``pairs.csv``); None when the index is missing or unreadable."""
    try:
        if label_maps:
            content = json.loads((root / DATALIST_NAME).read_text())
            return [(e["image"], e["label"]) for section in ("training", "validation") for e in content[section]]
        with open(root / "pairs.csv", newline="") as f:
            return [(f"images/{row['filename']}", f"masks/{row['filename']}") for row in csv.DictReader(f)]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_complete_demo_dataset(root: str | Path, **params: object) -> bool:
    """Whether ``root`` holds a finished demo dataset, generated with ``params`` when any are given.

    Args:
        root: dataset folder.
        params: generation parameters (``num_cases``, ``size``, ``val_fraction``, ``seed``, ``label_maps``) that
            must match.

    Returns:
        True when the completion marker exists, comes from this generator version, matches ``params`` and every
        file listed in ``dataset.json`` (label maps) or ``pairs.csv`` (binary masks) exists.
    """
    root = Path(root)
    recorded = _FOLDER.matching_marker(root, params)
    if recorded is None:
        return False
    pairs = _listed_pairs(root, bool(recorded.get("label_maps")))
    return (
        pairs is not None
        and len(pairs) == recorded.get("num_cases")
        and all((root / image).is_file() and (root / label).is_file() for image, label in pairs)
    )


def _datalist(names: list[str], val: set[int]) -> dict[str, object]:
    """The decathlon-style datalist of a dataset of label maps: the structures, then the fixed split."""
    entries = [{"image": f"images/{name}", "label": f"labels/{Path(name).stem}.png"} for name in names]
    return {
        "name": "demo_ct",
        "description": "Synthetic chest-CT slices (pipeline.demo); not suitable for any clinical purpose",
        "labels": {str(value): name for value, name in LABELS.items()},
        "training": [entry for i, entry in enumerate(entries) if i not in val],
        "validation": [entry for i, entry in enumerate(entries) if i in val],
    }


def write_demo_dataset(
    root: str | Path,
    num_cases: int = 160,
    size: int = 256,
    val_fraction: float = 0.2,
    seed: int = 0,
    label_maps: bool = False,
) -> Path:
    """Write a synthetic chest CT dataset: binary lung masks in the layout of the reference Kaggle lung set, or
    label maps of the lungs and the heart with a decathlon-style datalist.

    Layout of the binary lung masks (the default: one structure, as the tests' small models need)::

        root/images/case_0000.tif   int16 HU, uncompressed
        root/masks/case_0000.tif    uint8 {0, 1}, LZW
        root/pairs.csv              filename,split (train / val)
        root/demo_dataset.json      generation parameters, the marker of a finished demo dataset

    With ``label_maps`` (the README's demo data, :func:`ensure_demo_dataset`)::

        root/images/case_0000.tif   int16 HU, uncompressed (the same images)
        root/labels/case_0000.png   uint8 label map: 0 background, 1 right lung, 2 left lung, 3 heart
        root/dataset.json           "labels" (the structures' names), "training" and "validation" items
        root/demo_dataset.json      generation parameters, the marker of a finished demo dataset

    Everything is written into a temporary sibling folder that is renamed to ``root`` at the end, so an interrupted
    run never leaves a folder that looks complete. An existing ``root`` is replaced only if it is empty or a demo
    dataset written by this function (it carries ``demo_dataset.json``); anything else is left alone.

    Args:
        root: output folder.
        num_cases: number of slices. Defaults to 160.
        size: slice height and width in pixels. Defaults to 256.
        val_fraction: fraction of cases in the ``val`` split, rounded to the nearest case. Defaults to 0.2.
        seed: random seed; the same seed gives byte-identical files. Defaults to 0.
        label_maps: write label maps of the right lung, the left lung and the heart
            (:data:`~pipeline.demo.phantom.LABELS`) instead of binary lung masks. Defaults to False.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: for ``num_cases < 1``, ``size < 64`` or ``val_fraction`` outside [0, 1).
        FileExistsError: when ``root`` exists and holds something other than a demo dataset (checked before any
            work and again before the final rename).
    """
    if num_cases < 1:
        raise ValueError(f"num_cases must be at least 1, got {num_cases}")
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(root)
    params = {
        "num_cases": num_cases,
        "size": size,
        "val_fraction": val_fraction,
        "seed": seed,
        "label_maps": label_maps,
    }
    with _FOLDER.build(root, params, lambda r: is_complete_demo_dataset(r, **params)) as (tmp, _):
        (tmp / "images").mkdir()
        (tmp / ("labels" if label_maps else "masks")).mkdir()
        names = [f"case_{i:04d}.tif" for i in range(num_cases)]
        for i, name in enumerate(names):
            image, mask = synthesize_ct_slice(_case_rng(seed, i), size, label_maps=label_maps)
            tifffile.imwrite(tmp / "images" / name, image, photometric="minisblack")
            if label_maps:
                Image.fromarray(mask).save(tmp / "labels" / f"{Path(name).stem}.png")
            else:
                Image.fromarray(mask).save(tmp / "masks" / name, compression="tiff_lzw")
        n_val = round(num_cases * val_fraction)
        val = set(np.random.default_rng([seed, 0]).permutation(num_cases)[:n_val].tolist())
        if label_maps:
            (tmp / DATALIST_NAME).write_text(json.dumps(_datalist(names, val), indent=2) + "\n")
        else:
            with open(tmp / "pairs.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["filename", "split"])
                writer.writerows([name, "val" if i in val else "train"] for i, name in enumerate(names))
    return root


def ensure_demo_dataset(root: str | Path, **kwargs: object) -> Path:
    """Return ``root`` after generating the demo dataset there unless a complete one already exists.

    The demo dataset is the README's: label maps of the right lung, the left lung and the heart
    (``label_maps=True``), unless ``kwargs`` asks for the binary lung masks. An existing dataset is reused only when
    the parameters recorded in its ``demo_dataset.json`` equal the requested ones, the defaults of
    :func:`write_demo_dataset` filling in what ``kwargs`` leaves out; otherwise it is regenerated. A folder that is
    not a demo dataset is never replaced.

    Args:
        root: dataset folder, e.g. ``datasets/demo_ct``.
        kwargs: forwarded to :func:`write_demo_dataset` (``num_cases``, ``size``, ``val_fraction``, ``seed``,
            ``label_maps``).

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: for a keyword that :func:`write_demo_dataset` does not take.
        FileExistsError: when ``root`` exists and is neither empty nor a demo dataset.
    """
    return _FOLDER.ensure(root, write_demo_dataset, is_complete_demo_dataset, {"label_maps": True, **kwargs})


def demo_dataset_dir(bundle_root: str | os.PathLike) -> str:
    """Where a bundle keeps the demo slices (the bundles' default ``dataset_dir``): in a clone, ``datasets/demo_ct``
    beside ``bundles/``, whatever the working directory; for the bundles of an installed wheel, ``datasets/demo_ct``
    in the working directory, as its outputs are (the installed package is no place for data)."""
    from pipeline.bundle import PACKAGED_BUNDLES_DIR

    if Path(bundle_root).resolve().parent == PACKAGED_BUNDLES_DIR:
        return os.path.abspath(os.path.join("datasets", "demo_ct"))
    return os.path.normpath(os.path.join(bundle_root, "..", "..", "datasets", "demo_ct"))


def ensure_if_demo(dataset_dir: str | os.PathLike, demo_dir: str | os.PathLike) -> str:
    """``dataset_dir``, after the demo slices were generated there (:func:`ensure_demo_dataset`) when it is the demo
    folder: the README's command trains on a fresh clone with no download. Any other folder is left as it is."""
    if os.path.realpath(dataset_dir) == os.path.realpath(demo_dir):
        ensure_demo_dataset(dataset_dir)
    return os.fspath(dataset_dir)
