"""``LoadSlice``: one 2D slice from PNG, JPEG, TIFF, DICOM or NIfTI as a channel-first ``MetaTensor``.

One orientation for every format, numpy display order: rows top to bottom, columns left to right, as the image is
shown by an image viewer (PNG/JPEG/TIFF), a DICOM viewer (row = ``Rows`` direction) or a radiological NIfTI viewer.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from monai.config import DtypeLike
from monai.data import MetaTensor, NibabelReader, PILReader, PydicomReader
from monai.transforms import EnsureChannelFirst, Transform
from monai.utils import ImageMetaKey

from pipeline.io.dicom_slice import load_dicom_slice
from pipeline.io.nifti_slice import load_nifti_slice
from pipeline.io.pillow_slice import PALETTE_READINGS, load_pil_slice
from pipeline.io.readers import (
    MAX_SLICE_PIXELS,
    SliceFileNotFoundError,
    SliceReadError,
    missing_file_reason,
    reader_for,
)

__all__ = ["LoadSlice"]


class LoadSlice(Transform):
    """Load one 2D slice, naming the reader per file type, into a (C, H, W) ``MetaTensor``.

    MONAI's ``LoadImage`` picks a reader by trial (``.tif`` goes to the DICOM reader when ITK is absent) and its
    readers disagree about axis order; here the reader is chosen by :func:`pipeline.io.readers.reader_for` and every
    format loads to the same array for the same picture. DICOM rescale slope/intercept are applied and MONOCHROME1
    is inverted; NIfTI volumes give one chosen slice.

    Args:
        dtype: dtype of the returned tensor; ``None`` keeps the dtype the reader decodes to (Pillow gives int32
            for int16 TIFF).
        slice_index: slice of a 3D NIfTI volume (see :func:`pipeline.io.nifti_slice.load_nifti_slice`).
        frame_index: frame of a multi-frame DICOM or page of a multi-page TIFF.
        max_pixels: refuse a slice larger than this (height x width), from its header, before decoding it; ``None``
            or 0: no limit. Defaults to :data:`~pipeline.io.readers.MAX_SLICE_PIXELS` (50 megapixels).
        palette: how a palette (indexed) PNG or TIFF is read: ``"colours"`` (default), the picture it shows,
            one grey channel when all its colours are greys and RGB otherwise; ``"indices"``, its palette indices,
            for a label map.

    Example::

        image = LoadSlice()("images/ID_0000.tif")  # MetaTensor (1, 512, 512), float32 HU
        label = LoadSlice(palette="indices")("labels/ID_0000.png")  # a palette label map: its values as stored

    Raises:
        ValueError: ``palette`` is not one of ``"colours"``, ``"indices"``.
    """

    def __init__(
        self,
        dtype: DtypeLike | torch.dtype = np.float32,
        slice_index: int | None = None,
        frame_index: int | None = None,
        max_pixels: int | None = MAX_SLICE_PIXELS,
        palette: str = "colours",
    ) -> None:
        self.dtype = dtype
        if palette not in PALETTE_READINGS:
            raise ValueError(
                f"palette must be one of {', '.join(map(repr, PALETTE_READINGS))} (a picture, or a label map's "
                f"indices), got {palette!r}"
            )
        self.palette = palette
        self.max_pixels = max_pixels
        self.slice_index = slice_index
        self.frame_index = frame_index

    def __call__(
        self, filename: str | os.PathLike, slice_index: int | None = None, frame_index: int | None = None
    ) -> MetaTensor:
        """Load ``filename``.

        Args:
            filename: path of the slice file.
            slice_index: overrides the constructor's ``slice_index`` for this call.
            frame_index: overrides the constructor's ``frame_index`` for this call.

        Returns:
            (C, H, W) tensor, C = 1 for grayscale and 3 for RGB; ``meta["filename_or_obj"]`` is ``filename``.

        Raises:
            SliceReadError: the file is missing (``SliceFileNotFoundError``), of an unsupported type, unreadable, or
                not one 2D slice; the message names the file.
        """
        path = os.fspath(filename)
        if not os.path.isfile(path):
            raise SliceFileNotFoundError(f"{path}: {missing_file_reason(path)}")
        slice_index = self.slice_index if slice_index is None else slice_index
        frame_index = self.frame_index if frame_index is None else frame_index
        reader = reader_for(path)
        if isinstance(reader, PILReader):
            array, meta = load_pil_slice(path, reader, frame_index, self.max_pixels, self.palette)
        elif isinstance(reader, PydicomReader):
            array, meta = load_dicom_slice(path, reader, frame_index, self.max_pixels)
        elif isinstance(reader, NibabelReader):
            array, meta = load_nifti_slice(path, reader, slice_index, self.max_pixels)
        else:  # pragma: no cover - reader_for returns one of the three
            raise SliceReadError(f"{path}: no loader for reader {type(reader).__name__}")
        # the per-format loaders already drop alpha (Pillow) and refuse other sample counts (DICOM)
        if array.ndim == 3 and array.shape[-1] != 3:
            raise SliceReadError(f"{path}: expected a grayscale or RGB slice, got array of shape {array.shape}")
        meta[ImageMetaKey.FILENAME_OR_OBJ] = path
        # Writable and contiguous: Pillow hands out read-only buffers, which torch refuses to share safely.
        array = np.require(array, dtype=self.dtype, requirements=["C", "W"])
        image = MetaTensor.ensure_torch_and_prune_meta(array, meta)
        return EnsureChannelFirst()(image)
