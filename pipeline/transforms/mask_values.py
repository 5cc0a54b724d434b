"""Helpers for binary masks shared by :class:`~pipeline.transforms.BinarizeMask` and the dataset pre-flight check.

Masks arrive as raw values: ``{0, 1}``, ``{0, 255}``, JPEG-decoded ``0..255`` with noise around the two levels, or
three-channel copies of any of these. :func:`auto_mask_threshold` picks the threshold that separates foreground from
background without knowing the file format; :func:`mask_value_report` says when a mask is *not* a binary mask (label
indices, grey levels, colour-coded classes), so that the check can stop before training silently merges or drops
classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_tensor

__all__ = ["auto_mask_threshold", "mask_value_report"]


def auto_mask_threshold(mask: NdarrayOrTensor) -> float:
    """Threshold that separates foreground from background in a raw mask, independent of its dtype.

    The loader hands masks over as float32, so the dtype no longer tells an 8-bit mask from a 0/1 mask; the value
    range does:

    - maximum ``<= 1`` (``{0, 1}`` masks, all-zero masks): ``0.5``;
    - maximum ``<= 255`` (8-bit masks, including JPEG-decoded ones whose noise stays far from the middle): ``127.5``;
    - larger maximum (16-bit masks such as ``{0, 65535}``): half the maximum.

    A mask holding small label indices such as ``{0, 2}`` therefore comes out empty with the automatic threshold;
    :func:`mask_value_report` reports that case, and an explicit threshold fixes it.

    Args:
        mask: raw mask values, any shape. An empty array gives ``0.5``.

    Returns:
        The threshold; a value is foreground when it is strictly greater.
    """
    values = convert_to_tensor(mask, track_meta=False)
    if values.numel() == 0:
        return 0.5
    max_value = float(values.max())
    if max_value <= 1.0:
        return 0.5
    if max_value <= 255.0:
        return 127.5
    return 0.5 * max_value


def _interior(region: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels of ``region`` (H, W) whose whole (2r+1) x (2r+1) neighbourhood inside the image belongs to it."""
    outside = (~region).to(torch.float32)[None, None]
    return F.max_pool2d(outside, kernel_size=2 * radius + 1, stride=1, padding=radius)[0, 0] == 0


def _format_values(values: torch.Tensor, limit: int = 6) -> str:
    uniques, counts = torch.unique(values, return_counts=True)
    order = torch.argsort(counts, descending=True)[:limit]
    shown = ", ".join(f"{uniques[i].item():g} ({counts[i].item()} px)" for i in order)
    more = f", ... {len(uniques) - limit} more" if len(uniques) > limit else ""
    return f"{shown}{more}"


def mask_value_report(
    mask: NdarrayOrTensor, threshold: float | None = None, tolerance: float = 0.1, radius: int = 2
) -> str | None:
    """Explain why a raw 2D mask is not a binary mask, or return ``None`` when it is one.

    A mask counts as binary when, after :class:`~pipeline.transforms.BinarizeMask` reduces it to one channel (maximum
    over channels) and thresholds it, nothing meaningful is lost. Values are judged as two levels plus noise: the low
    level is the minimum, the high level the maximum, and values within ``tolerance * (max - min)`` of either level
    belong to it. Values in between are accepted as JPEG or interpolation noise only where they lie on edges, i.e.
    they never fill a whole ``(2 * radius + 1)`` square; JPEG ringing around a binary edge is one to three pixels wide
    even at quality 30, whereas a real third label fills regions. Checks, first finding reported:

    1. values that are NaN or infinite;
    2. thresholding leaves no foreground although the mask is not constant (label indices such as ``{0, 2}`` under
       the automatic threshold 127.5), or no background;
    3. multi-channel masks whose channels, thresholded one by one, form two or more foreground colours that each fill
       regions (colour-coded classes, which the channel maximum would merge);
    4. intermediate values that fill regions (label maps such as ``{0, 1, 2}``, grey-level masks, soft labels).

    A constant mask (all zero included) is binary. Thin structures narrower than the square, such as a one-pixel
    contour drawn with a third value, are taken for edge noise.

    Args:
        mask: raw mask, ``(C, H, W)`` channel-first or ``(H, W)``; numpy or torch.
        threshold: the threshold ``BinarizeMask`` will use; ``None`` (default) means :func:`auto_mask_threshold`.
        tolerance: fraction of the value range around each level that counts as noise of that level. Defaults to
            0.1 (about 25 grey levels for 8-bit masks).
        radius: half the side of the square an intermediate value or a colour must fill to count as a region.
            Defaults to 2 (5 x 5 pixels).

    Returns:
        ``None`` for a binary mask, otherwise one sentence saying what was found and what to do.

    Raises:
        ValueError: when ``mask`` is not 2D or 3D, ``tolerance`` is not in ``[0, 0.5)`` or ``radius`` is negative.
    """
    if not 0.0 <= tolerance < 0.5:
        raise ValueError(f"tolerance must be in [0, 0.5), got {tolerance}.")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}.")
    values = convert_to_tensor(mask, track_meta=False, dtype=torch.float64)
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3:
        raise ValueError(f"mask must be (C, H, W) or (H, W), got shape {tuple(values.shape)}.")
    if values.numel() == 0:
        return None
    if not torch.isfinite(values).all():
        return "mask contains NaN or infinite values."

    reduced = values.amax(dim=0)
    low, high = float(reduced.min()), float(reduced.max())
    if low == high:
        return None
    used = auto_mask_threshold(reduced) if threshold is None else float(threshold)
    source = "automatic threshold" if threshold is None else "threshold"
    foreground = reduced > used
    if not foreground.any():
        return (
            f"{source} {used:g} leaves no foreground although values reach {high:g}"
            f" (values: {_format_values(reduced)}); the mask may hold label indices; pass an explicit threshold."
        )
    if foreground.all():
        return f"{source} {used:g} leaves no background (minimum value {low:g}); pass an explicit threshold."

    if values.shape[0] > 1:
        bits = 2 ** torch.arange(values.shape[0], dtype=torch.int64)
        colours = ((values > used).to(torch.int64) * bits[:, None, None]).sum(dim=0)
        filled = [int(code) for code in torch.unique(colours) if code > 0 and _interior(colours == code, radius).any()]
        if len(filled) >= 2:
            names = ", ".join(str(tuple(int(code) >> c & 1 for c in range(values.shape[0]))) for code in filled)
            return (
                f"mask has {len(filled)} foreground colours that fill regions (channels above {used:g}: {names});"
                " colour-coded classes would be merged into one by BinarizeMask."
            )

    band = tolerance * (high - low)
    intermediate = (reduced > low + band) & (reduced < high - band)
    if intermediate.any() and _interior(intermediate, radius).any():
        return (
            f"mask has intermediate values between {low:g} and {high:g} that fill regions, not only edges"
            f" ({len(torch.unique(reduced))} distinct values: {_format_values(reduced)});"
            " it looks like a label map or a grey-level mask, not a binary mask."
        )
    return None
