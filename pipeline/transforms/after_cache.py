"""Cache in the compact type the data needs, and mark where ``CacheDataset`` stops caching.

``CacheDataset`` keeps the output of every transform before the first random one, as float32 by default: 256 KiB per
256 x 256 image and as much again for its mask, 10 GiB for 20,000 training slices. The bundles cast what they cache
to float16 (images scaled to about [0, 1], and training masks after a bilinear resize: a step of at most 2.4e-4, a
third of a Hounsfield unit in the lung window) and validation masks, which stay binary, to uint8; then
:class:`AfterCache` turns them back to float32 for the augmentation and the network.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

__all__ = ["AfterCache"]


class AfterCache:
    """Run ``transform`` on every item as it is drawn, after ``CacheDataset``'s cache.

    ``CacheDataset`` caches up to the first random transform or the first callable that is not a MONAI ``Transform``;
    this wrapper is deliberately not one, so everything before it is cached and ``transform`` (a cast back to float32)
    runs per draw.

    Args:
        transform: a dictionary transform, e.g. ``CastToTyped(keys=["image", "label"], dtype="float32")``.
    """

    def __init__(self, transform: Callable[[Mapping[Hashable, Any]], Any]) -> None:
        self.transform = transform

    def __call__(self, data: Mapping[Hashable, Any]) -> Any:
        return self.transform(data)
