"""A trained model of several structures, for the export and packaging tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

STRUCTURES = {1: "liver", 2: "spleen", 5: "kidney"}
"""The 3-structure dataset's label values and names: value 5 checks that channel 3 is the third value, not value 3."""


def write_structures_dataset(
    root: Path, structures: Mapping[int, str], count: int = 4, size: int = 64, seed: int = 0
) -> Path:
    """``count`` grey images with one disc per structure, each in a cell of a grid and at an intensity of its own, their
    label maps in the structures' values, and a ``dataset.json`` whose ``labels`` map names them."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rows, cols = np.mgrid[:size, :size]
    grid = int(np.ceil(np.sqrt(len(structures))))
    cell = size / grid
    items = []
    for k in range(count):
        label = np.zeros((size, size), np.uint8)
        for place, value in enumerate(sorted(structures)):
            row, col = (np.array(divmod(place, grid)) + 0.5) * cell + rng.uniform(-1, 1, 2)
            label[(rows - row) ** 2 + (cols - col) ** 2 < (cell * rng.uniform(0.25, 0.4)) ** 2] = value
        image = 30 + 200 * label / max(structures) + rng.normal(0, 5, label.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"c{k}.png")
        Image.fromarray(label).save(root / "labels" / f"c{k}.png")
        items.append({"image": f"images/c{k}.png", "label": f"labels/c{k}.png"})
    labels = {"0": "background", **{str(v): name for v, name in structures.items()}}
    (root / "dataset.json").write_text(json.dumps({"labels": labels, "training": items}))
    return root


@pytest.fixture(scope="session")
def structures_run(tmp_path_factory, run_bundle) -> tuple[Path, Path]:
    """(run folder, images) of a 1-epoch unet run on 4 images of :data:`STRUCTURES` at 64 x 64. Without the output
    bias the untrained softmax still spreads over the structures, so that the label maps compared are not all
    background."""
    root = tmp_path_factory.mktemp("structures")
    dataset = write_structures_dataset(root / "data", STRUCTURES)
    run_bundle("train", dataset_dir=str(dataset), output_dir=str(root / "out"), modality="OT", output_bias=False)
    return root / "out" / "latest", dataset / "images"
