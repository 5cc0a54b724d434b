"""The training loss: MONAI's Dice + cross-entropy, with the activation that fits the structures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from monai.losses import DiceCELoss

from pipeline.segments import Structure, is_multiclass

__all__ = ["segmentation_loss"]


def segmentation_loss(structures: Sequence[Structure | Mapping[str, Any]], **kwargs: Any) -> DiceCELoss:
    """``DiceCELoss`` for the model of ``structures``: sigmoid (binary cross-entropy and Dice on one channel, the
    seeds' "BCE + Dice") for one structure; softmax over background and structures for several, against the one-hot
    (soft, after resizing) targets :class:`pipeline.transforms.LabelToChannels` makes.

    Args:
        structures: what the model segments (the bundles' ``@structures``).
        kwargs: any other ``DiceCELoss`` argument (``lambda_dice``, ``include_background``...).
    """
    multiclass = is_multiclass(structures)
    return DiceCELoss(sigmoid=not multiclass, softmax=multiclass, **kwargs)
