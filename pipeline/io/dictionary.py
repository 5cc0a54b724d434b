"""``LoadSliced``: the dictionary wrapper of :class:`pipeline.io.array.LoadSlice`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

from pipeline.io.array import LoadSlice
from pipeline.io.readers import MAX_SLICE_PIXELS

__all__ = ["LoadSliced"]


class LoadSliced(MapTransform):
    """Load the file named under each key into a (C, H, W) ``MetaTensor``; see :class:`LoadSlice`.

    Args:
        keys: keys whose values are file paths.
        dtype: dtype of the loaded tensors.
        slice_index_key: item key holding a per-item slice index of a 3D NIfTI volume (used when present).
        frame_index_key: item key holding a per-item DICOM frame / TIFF page index (used when present).
        max_pixels: the largest slice accepted (height x width), see :class:`LoadSlice`.
        palette: how a palette image is read under each key, one value for all or one per key: ``"colours"`` for
            a picture, ``"indices"`` for a label map (see :class:`LoadSlice`); the bundles pass
            ``["colours", "indices"]`` for ``["image", "label"]``.
        allow_missing_keys: don't raise for missing keys.

    Raises:
        ValueError: a ``palette`` value that is not ``"colours"`` or ``"indices"``, or not one per key.
    """

    def __init__(
        self,
        keys: KeysCollection,
        dtype: DtypeLike | torch.dtype = np.float32,
        slice_index_key: str = "slice_index",
        frame_index_key: str = "frame_index",
        max_pixels: int | None = MAX_SLICE_PIXELS,
        palette: str | Sequence[str] = "colours",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loaders = [
            LoadSlice(dtype=dtype, max_pixels=max_pixels, palette=reading)
            for reading in ensure_tuple_rep(palette, len(self.keys))
        ]
        self.slice_index_key = slice_index_key
        self.frame_index_key = frame_index_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        slice_index = d.get(self.slice_index_key)
        frame_index = d.get(self.frame_index_key)
        for key, loader in self.key_iterator(d, self.loaders):
            d[key] = loader(d[key], slice_index=slice_index, frame_index=frame_index)
        return d
