"""Mask clean-up after thresholding: keep the largest connected components, fill holes (MONAI's transforms).

Two lungs are two components; a 2D model trained on single slices also marks air outside the body (the scanner
table, bowel gas), which are smaller components. ``mask_cleanup`` builds the optional steps from two settings, so
that a bundle config switches them with ``--keep_largest 2 --fill_holes true``.
"""

from __future__ import annotations

from monai.config import KeysCollection
from monai.transforms import FillHolesd, KeepLargestConnectedComponentd, MapTransform

__all__ = ["mask_cleanup"]


def mask_cleanup(keys: KeysCollection = "pred", keep_largest: int = 0, fill_holes: bool = False) -> list[MapTransform]:
    """The clean-up transforms for binary (1, H, W) masks under ``keys``, in order; empty when both are off.

    Args:
        keys: keys of the masks (values 0/1, channel first).
        keep_largest: keep this many largest connected components of the foreground (8-connected in 2D);
            0 keeps everything.
        fill_holes: fill background regions that the foreground encloses completely.

    Returns:
        ``[KeepLargestConnectedComponentd, FillHolesd]``, each only when switched on.

    Raises:
        ValueError: ``keep_largest`` is negative.
    """
    if keep_largest < 0:
        raise ValueError(f"keep_largest must be 0 (off) or a positive number of components, got {keep_largest}")
    steps: list[MapTransform] = []
    if keep_largest:
        steps.append(
            KeepLargestConnectedComponentd(keys, applied_labels=[1], is_onehot=False, num_components=keep_largest)
        )
    if fill_holes:
        steps.append(FillHolesd(keys, applied_labels=[1]))
    return steps
