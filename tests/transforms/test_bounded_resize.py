"""The bounded resize: MONAI's anti-aliased ``Resize`` unchanged for ordinary sizes; for images far larger than the
network input, an area-mean shrink first, the same geometry (affine, inverse to the input's own size), and a peak
memory that stays bounded at the pixel limit (measured by RSS, in a process of its own)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, Resized

from pipeline.io.readers import MAX_SLICE_PIXELS
from pipeline.transforms import BoundedResized

REPO = Path(__file__).resolve().parents[2]
MEMORY_BOUND_GIB = 4.0
"""Peak resident memory allowed for inference on one image at the pixel limit (the documented bound)."""


def _smooth(height: int, width: int) -> MetaTensor:
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    disc = (rows - height / 2) ** 2 + (cols - width / 3) ** 2 < (height / 4) ** 2
    picture = np.sin(rows / height * 6) + np.cos(cols / width * 4) + disc
    return MetaTensor(torch.from_numpy(picture[None].astype(np.float32)))


def _both(image: MetaTensor, size: tuple[int, int]) -> tuple[dict, dict, Compose, Compose]:
    ours = Compose([BoundedResized("image", spatial_size=size, mode="bilinear", anti_aliasing=True)])
    monai = Compose([Resized("image", spatial_size=size, mode="bilinear", anti_aliasing=True)])
    return ours({"image": image.clone()}), monai({"image": image.clone()}), ours, monai


@pytest.mark.parametrize("shape", [(64, 64), (256, 300), (512, 512), (760, 700)])
def test_ordinary_sizes_are_monai_s_resize(shape):
    ours, monai, _, _ = _both(_smooth(*shape), (192, 192))
    torch.testing.assert_close(ours["image"].as_tensor(), monai["image"].as_tensor(), rtol=0, atol=0)
    torch.testing.assert_close(ours["image"].affine, monai["image"].affine)


@pytest.mark.parametrize("shape", [(3000, 3000), (2048, 1000), (1200, 4000)])
def test_large_images_shrink_by_area_first_with_the_same_geometry(shape):
    ours, monai, transform, _ = _both(_smooth(*shape), (192, 192))
    assert ours["image"].shape == monai["image"].shape == (1, 192, 192)
    difference = (ours["image"] - monai["image"]).abs().as_tensor()[0]
    # both anti-aliased, by other filters: the same picture, within 10 % of the disc's step at its edge and at the
    # border (which MONAI's wide zero-padded kernel darkens)
    assert float(difference[4:-4, 4:-4].mean()) < 0.005 and float(difference.max()) < 0.1
    torch.testing.assert_close(ours["image"].affine, monai["image"].affine)
    back = Invertd("image", transform=transform, orig_keys="image", nearest_interp=False)({"image": ours["image"]})
    assert tuple(back["image"].shape) == (1, *shape)


def test_the_pixel_limit_fits_the_memory_bound(tmp_path):
    """Inference on a 16-bit CT image at the pixel limit (about 7,071 x 7,071) through ``Segmenter.predict``: the
    peak resident memory of the process stays under the documented bound (MONAI's resize alone asked for 90 GB)."""
    side = int(MAX_SLICE_PIXELS**0.5)
    rows = np.linspace(-1000, 400, side, dtype=np.float32)
    tifffile.imwrite(tmp_path / "large.tif", (rows[:, None] + np.zeros((1, side), np.float32)).astype(np.int16))
    script = (
        "import resource, sys; from pipeline import Segmenter; "
        "m = Segmenter(sys.argv[1], device='cpu', **{'network_def#channels': [4, 8, 16, 32, 64]}); "
        "mask = m.predict(sys.argv[2]); "
        "print(mask.shape, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    model = REPO / "tests" / "data" / "binary_model_964005e" / "model.pt"
    result = subprocess.run(
        [sys.executable, "-c", script, str(model), str(tmp_path / "large.tif")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    shape, peak_kib = result.stdout.strip().rsplit(" ", 1)
    assert shape == f"({side}, {side})"
    assert int(peak_kib) / 2**20 < MEMORY_BOUND_GIB, f"peak {int(peak_kib) / 2**20:.2f} GiB"
