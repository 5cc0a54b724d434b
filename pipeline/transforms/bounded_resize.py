"""Resizing to the network input in memory that stays bounded, however large the image.

MONAI's anti-aliased ``Resize`` smooths the whole image with a Gaussian of sigma ``(s - 1) / 2`` for a shrink factor
``s`` before interpolating. For a 7,000 x 7,000 radiograph going to 192 x 192 (``s`` about 36) that kernel is 145
taps wide, and the CPU convolution that runs it unfolds the image once per tap: it asked for 90.5 GB. Shrinking by an
area mean first (itself an anti-aliasing filter, and memory-light) until at most :data:`LARGEST_GAUSSIAN_FACTOR` is
left, then MONAI's anti-aliased resize for the rest, keeps the peak near a few copies of the image.

The inverse (``Invertd``) maps straight back to the input's own size, as MONAI's ``Resize`` does; images at most
:data:`LARGEST_GAUSSIAN_FACTOR` times the output size take MONAI's path unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd
from monai.transforms import Resize, Resized
from monai.transforms.utils import scale_affine
from monai.utils import TraceKeys, fall_back_tuple

__all__ = ["LARGEST_GAUSSIAN_FACTOR", "BoundedResize", "BoundedResized"]

LARGEST_GAUSSIAN_FACTOR = 4
"""The largest shrink factor left to the Gaussian anti-aliasing (sigma at most 1.5, a kernel of 13 taps)."""


def _area_shrink(img: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``img`` (C, *spatial) averaged over areas to ``size``: every output pixel the mean of the input pixels it
    covers, the whole extent kept (adaptive average pooling)."""
    return F.interpolate(img[None].float(), size=tuple(size), mode="area")[0].to(img.dtype)


class BoundedResize(Resize):
    """MONAI's :class:`~monai.transforms.Resize`, with an area-mean shrink first for images much larger than the
    output, so that the anti-aliasing never runs a wide kernel over a huge image.

    Takes the arguments of :class:`~monai.transforms.Resize`. With ``anti_aliasing`` and a shrink factor above
    :data:`LARGEST_GAUSSIAN_FACTOR` along some axis, the image is first area-averaged to
    :data:`LARGEST_GAUSSIAN_FACTOR` times the output size along those axes; the applied operation still records the
    input's own size, so the inverse restores it in one step.
    """

    def __call__(self, img: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """MONAI's ``Resize.__call__`` (same arguments), after the area-mean shrink where it is needed."""
        anti_aliasing = kwargs.get("anti_aliasing")
        anti_aliasing = self.anti_aliasing if anti_aliasing is None else anti_aliasing
        sigma = kwargs.get("anti_aliasing_sigma")
        sigma = self.anti_aliasing_sigma if sigma is None else sigma
        lazy = kwargs.get("lazy")
        lazy = self.lazy if lazy is None else lazy
        if args or not anti_aliasing or sigma is not None or lazy or self.size_mode != "all":
            return super().__call__(img, *args, **kwargs)
        original = tuple(int(s) for s in img.shape[1:])
        target = fall_back_tuple(self.spatial_size, original)
        reduced = tuple(min(s, LARGEST_GAUSSIAN_FACTOR * t) for s, t in zip(original, target, strict=True))
        if reduced == original:
            return super().__call__(img, *args, **kwargs)
        shrunk = _area_shrink(torch.as_tensor(img), reduced)
        if isinstance(img, MetaTensor):
            shrunk = MetaTensor(shrunk, meta=dict(img.meta), applied_operations=list(img.applied_operations))
        out = super().__call__(shrunk, **kwargs)
        if isinstance(out, MetaTensor) and isinstance(img, MetaTensor):
            out.applied_operations[-1][TraceKeys.ORIG_SIZE] = original  # the inverse goes back to the input's size
            affine = torch.as_tensor(img.affine, dtype=torch.float64)
            out.affine = affine @ torch.as_tensor(to_affine_nd(affine.shape[0] - 1, scale_affine(original, target))).to(
                affine
            )
        return out


class BoundedResized(Resized):
    """Dictionary wrapper of :class:`BoundedResize`: MONAI's :class:`~monai.transforms.Resized` with the bounded
    shrink. Takes the arguments of :class:`~monai.transforms.Resized`."""

    def __init__(self, keys: KeysCollection, spatial_size: Sequence[int] | int, *args: Any, **kwargs: Any) -> None:
        super().__init__(keys, spatial_size, *args, **kwargs)
        resizer = self.resizer
        self.resizer = BoundedResize(
            spatial_size=resizer.spatial_size,
            size_mode=resizer.size_mode,
            anti_aliasing=resizer.anti_aliasing,
            anti_aliasing_sigma=resizer.anti_aliasing_sigma,
            dtype=resizer.dtype,
            lazy=resizer.lazy,
        )
