"""Embedded demo dataset: synthetic chest-CT-like axial slices with lung masks.

The generator imitates the layout and intensity statistics of the Kaggle "Finding and Measuring Lungs in CT Data"
slices (512 x 512 int16 TIFF in Hounsfield units, uint8 {0, 1} LZW masks, ``pairs.csv`` with ``filename,split``) so
that a freshly cloned repository can train and evaluate a bundle without downloading anything. The images are
synthetic phantoms and are not suitable for any clinical purpose.

Each slice is one random patient of :mod:`pipeline.demo.phantom` (the generator of the demo DICOM study too) cut at a
random level and scanned with a random reconstruction kernel between smooth and sharp.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from pipeline.atomic import GeneratedFolder
from pipeline.demo.phantom import ChestAnatomy, scan, scan_circle

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
GENERATOR_VERSION = 3
# The generator name in the marker predates the package layout: folders written before it stay recognised.
_FOLDER = GeneratedFolder(MARKER_NAME, "pipeline.data.demo", GENERATOR_VERSION, "demo dataset")


def synthesize_ct_slice(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise one chest-CT-like axial slice in Hounsfield units and its lung mask.

    One random patient (:class:`~pipeline.demo.phantom.ChestAnatomy`) cut at a random cranio-caudal level (small
    apical lungs, mid-chest lungs around the heart, or basal crescents over the diaphragm), scanned with a random
    reconstruction kernel between smooth and sharp (:func:`~pipeline.demo.phantom.scan`) and a random scanner gain,
    as in the reference scans. Vessels inside the lungs belong to the mask; the trachea, main bronchi, stomach gas and
    the air around the body do not.

    Args:
        rng: random generator; the same generator state gives byte-identical outputs.
        size: output height and width in pixels. Defaults to 256.

    Returns:
        ``(image, mask)``: ``image`` is an int16 array of shape ``(size, size)`` in HU (soft tissue about 40; the
        gain puts air between about -1030 and -810 and aerated lung between about -880 and -650; three slices in four
        have padding of about -1800 to -2500 outside the scan circle), ``mask`` a uint8 array of the same shape with
        values {0, 1}.

    Raises:
        ValueError: when ``size`` is smaller than 64.
    """
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    level = float(rng.beta(1.6, 1.6))  # 0: lung apex, 1: lung base
    padded = rng.random() < 0.75
    zoom = rng.uniform(0.9, 1.0) if padded else rng.uniform(1.0, 1.1)
    hu, lungs = ChestAnatomy.draw(rng, zoom).section(level, size, rng)
    sharpness, partial_volume = rng.uniform(0.0, 1.0), rng.uniform(0.6, 1.0)
    gain, offset = rng.uniform(0.82, 1.0), -rng.uniform(0.0, 30.0)  # the reference scans read air near -850 HU
    hu = scan(hu, rng, sharpness=sharpness, partial_volume=partial_volume, gain=gain, offset=offset)
    if padded:
        outside = ~scan_circle(size)
        hu[outside] = rng.uniform(-2500.0, -1800.0) + rng.uniform(30.0, 60.0) * rng.standard_normal(int(outside.sum()))
    image = np.clip(np.rint(hu), -3024, 3071).astype(np.int16)
    return image, lungs.astype(np.uint8)


def _case_rng(seed: int, index: int) -> np.random.Generator:
    """One independent stream per case, so case ``i`` is the same whatever ``num_cases`` is."""
    return np.random.default_rng([seed, 1, index])


def is_complete_demo_dataset(root: str | Path, **params: object) -> bool:
    """Whether ``root`` holds a finished demo dataset, generated with ``params`` when any are given.

    Args:
        root: dataset folder.
        params: generation parameters (``num_cases``, ``size``, ``val_fraction``, ``seed``) that must match.

    Returns:
        True when the completion marker exists, comes from this generator version, matches ``params`` and every
        file in ``pairs.csv`` exists.
    """
    root = Path(root)
    recorded = _FOLDER.matching_marker(root, params)
    if recorded is None:
        return False
    try:
        with open(root / "pairs.csv", newline="") as f:
            names = [row["filename"] for row in csv.DictReader(f)]
    except (OSError, ValueError, KeyError):
        return False
    return len(names) == recorded.get("num_cases") and all(
        (root / "images" / n).is_file() and (root / "masks" / n).is_file() for n in names
    )


def write_demo_dataset(
    root: str | Path,
    num_cases: int = 160,
    size: int = 256,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Path:
    """Write a synthetic lung CT dataset with the layout of the reference Kaggle lung set.

    Layout::

        root/images/case_0000.tif   int16 HU, uncompressed
        root/masks/case_0000.tif    uint8 {0, 1}, LZW
        root/pairs.csv              filename,split (train / val)
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
    params = {"num_cases": num_cases, "size": size, "val_fraction": val_fraction, "seed": seed}
    with _FOLDER.build(root, params) as (tmp, _):
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        names = [f"case_{i:04d}.tif" for i in range(num_cases)]
        for i, name in enumerate(names):
            image, mask = synthesize_ct_slice(_case_rng(seed, i), size)
            tifffile.imwrite(tmp / "images" / name, image, photometric="minisblack")
            Image.fromarray(mask).save(tmp / "masks" / name, compression="tiff_lzw")
        n_val = round(num_cases * val_fraction)
        val = set(np.random.default_rng([seed, 0]).permutation(num_cases)[:n_val].tolist())
        with open(tmp / "pairs.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "split"])
            writer.writerows([name, "val" if i in val else "train"] for i, name in enumerate(names))
    return root


def ensure_demo_dataset(root: str | Path, **kwargs: object) -> Path:
    """Return ``root`` after generating the demo dataset there unless a complete one already exists.

    An existing dataset is reused only when the parameters recorded in its ``demo_dataset.json`` equal the requested
    ones, the defaults of :func:`write_demo_dataset` filling in what ``kwargs`` leaves out; otherwise it is
    regenerated. A folder that is not a demo dataset is never replaced.

    Args:
        root: dataset folder, e.g. ``datasets/demo_ct``.
        kwargs: forwarded to :func:`write_demo_dataset` (``num_cases``, ``size``, ``val_fraction``, ``seed``).

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: for a keyword that :func:`write_demo_dataset` does not take.
        FileExistsError: when ``root`` exists and is neither empty nor a demo dataset.
    """
    return _FOLDER.ensure(root, write_demo_dataset, is_complete_demo_dataset, kwargs)


def demo_dataset_dir(bundle_root: str | os.PathLike) -> str:
    """Where a repository bundle keeps the demo slices: ``datasets/demo_ct`` beside ``bundles/``, whatever the
    working directory (the bundles' default ``dataset_dir``)."""
    return os.path.normpath(os.path.join(bundle_root, "..", "..", "datasets", "demo_ct"))


def ensure_if_demo(dataset_dir: str | os.PathLike, demo_dir: str | os.PathLike) -> str:
    """``dataset_dir``, after the demo slices were generated there (:func:`ensure_demo_dataset`) when it is the demo
    folder: the README's command trains on a fresh clone with no download. Any other folder is left as it is."""
    if os.path.realpath(dataset_dir) == os.path.realpath(demo_dir):
        ensure_demo_dataset(dataset_dir)
    return os.fspath(dataset_dir)
