"""PNG, JPEG and TIFF slices through MONAI's ``PILReader`` (Pillow), in numpy display order.

Pillow reads what this project meets: 8/16-bit PNG, int16 Hounsfield-unit TIFF (Pillow mode ``"I"``), uint8/uint16
TIFF masks including LZW-compressed ones (``tifffile`` would need ``imagecodecs`` for those), RGB and grayscale JPEG.

A palette (indexed) image is read by what it is: a picture as the colours its palette gives (grey when every colour
it uses is a grey; RGB otherwise), a label map as its indices. The pixel values of an indexed picture are positions in
its palette, in whatever order the writing tool chose (an optimiser such as ``pngquant`` sorts them by frequency),
so reading them as intensities would give a scrambled image without a word.
"""

from __future__ import annotations

import os

import numpy as np
from monai.data import PILReader
from monai.utils import MetaKeys
from PIL import Image

from pipeline.io.readers import SliceReadError, check_pixel_count

__all__ = ["PALETTE_READINGS", "load_pil_slice"]

PALETTE_READINGS = ("colours", "indices")
"""How a palette image is read: ``"colours"`` (a picture: grey or RGB, as it shows) or ``"indices"`` (a label map)."""

# Modes whose extra bands are alpha/padding or another colour space: reduce to RGB (Pillow drops alpha, no blending).
_TO_RGB = frozenset({"RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
# Grayscale or palette plus alpha: keep the first band (gray values, or palette indices for label masks).
_DROP_ALPHA = frozenset({"LA", "La", "PA"})
_PALETTE = frozenset({"P", "PA"})


def _normalise_mode(img: Image.Image, palette: str) -> Image.Image:
    """Drop alpha and convert non-RGB colour modes; grayscale, 16-bit, int32 and float images pass as-is.

    A palette image becomes the picture it shows with ``palette="colours"`` (:func:`_palette_colours`); with
    ``"indices"`` it keeps its indices, as ``np.asarray`` and MONAI's ``PILReader`` give them: in segmentation data a
    palette PNG is often a label map, and converting it would turn labels into colours.
    """
    if img.mode in _PALETTE and palette == "colours":
        return _palette_colours(img)
    if img.mode in _TO_RGB:
        return img.convert("RGB")
    if img.mode in _DROP_ALPHA:
        return img.getchannel(0)
    return img


def _palette_colours(img: Image.Image) -> Image.Image:
    """A palette image's colours, alpha dropped: one grey band ("L") when every pixel is grey, else RGB."""
    rgb = img.convert("RGB")
    pixels = np.asarray(rgb)
    if np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2]):
        grey = rgb.getchannel(0)
        rgb.close()
        return grey
    return rgb


def load_pil_slice(
    path: str | os.PathLike,
    reader: PILReader,
    frame_index: int | None = None,
    max_pixels: int | None = None,
    palette: str = "colours",
) -> tuple[np.ndarray, dict]:
    """Decode one 2D image with ``reader`` and fix its metadata to the (H, W) display order.

    Args:
        path: PNG, JPEG or TIFF file.
        reader: ``PILReader(reverse_indexing=False)``.
        frame_index: page of a multi-page TIFF (or frame of an animated PNG); required when there is more than one.
        max_pixels: refuse an image larger than this (height x width) before decoding it; ``None``: no limit.
        palette: how a palette image is read (:data:`PALETTE_READINGS`): ``"colours"`` for a picture, ``"indices"``
            for a label map.

    Returns:
        ``(array, meta)``: array (H, W) or (H, W, 3) as stored, rows top-to-bottom; meta from ``PILReader`` with
        ``spatial_shape`` (H, W) and ``original_channel_dim`` NaN or -1. EXIF orientation tags are not applied.

    Raises:
        SliceReadError: unreadable, truncated or corrupt file; multi-page file without ``frame_index``; frame out of
            range; more pixels than ``max_pixels``.
    """
    try:
        img = reader.read(path)
    except Image.DecompressionBombError as e:  # the header alone asks for more than Pillow's own hard limit
        raise SliceReadError(
            f"{path}: more than the limit of pixels Pillow will open ({e}); refusing to decode it. "
            "Downsample the image."
        ) from e
    except Exception as e:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError...
        raise SliceReadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
    converted = img
    try:
        n_frames = getattr(img, "n_frames", 1)
        if n_frames > 1 and frame_index is None:
            raise SliceReadError(
                f"{path}: image has {n_frames} pages/frames; a 2D slice loader takes one: pass frame_index "
                f"(0..{n_frames - 1})"
            )
        if frame_index is not None:
            if not 0 <= frame_index < n_frames:
                raise SliceReadError(f"{path}: frame_index {frame_index} out of range 0..{n_frames - 1}")
            img.seek(frame_index)
        file_format = img.format
        check_pixel_count(path, img.height, img.width, max_pixels)
        img.load()  # decode here so that a truncated file fails with its name, not inside np.asarray
        converted = _normalise_mode(img, palette)
        array, meta = reader.get_data(converted)
    except SliceReadError:
        raise
    except Exception as e:
        raise SliceReadError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e
    finally:
        if converted is not img:
            converted.close()
        img.close()
    meta["format"] = file_format  # a converted image has format None
    meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(array.shape[:2])
    meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = float("nan") if array.ndim == 2 else -1
    return array, meta
