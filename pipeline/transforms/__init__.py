"""Preparation transforms: intensity scaling per modality, channel count, binary masks; mask clean-up in 2D and 3D.

Logic lives in :mod:`pipeline.transforms.array`, the ``...d`` dictionary wrappers in
:mod:`pipeline.transforms.dictionary`, mask value helpers in :mod:`pipeline.transforms.mask_values`, clean-up after
thresholding in :mod:`pipeline.transforms.cleanup`. Resizing is MONAI's, with an area-mean shrink first for very
large images (:mod:`pipeline.transforms.bounded_resize`); augmentation uses MONAI's transforms directly (see the
:mod:`pipeline.transforms.array` docstring for the recipe).
"""

from __future__ import annotations

from pipeline.transforms.after_cache import AfterCache
from pipeline.transforms.array import (
    AIR_HU,
    BONE_WINDOW,
    BRAIN_WINDOW,
    CT_MODALITIES,
    LUNG_WINDOW,
    MEDIASTINUM_WINDOW,
    NON_CT_MODALITIES,
    SOFT_TISSUE_WINDOW,
    AdjustChannels,
    BinarizeMask,
    ChannelsToLabels,
    CTWindow,
    LabelToChannels,
    ScaleIntensityForModality,
    ScaleIntensityNonCT,
)
from pipeline.transforms.bounded_resize import BoundedResize, BoundedResized
from pipeline.transforms.cleanup import VolumeCleanup, fill_slice_holes, mask_cleanup
from pipeline.transforms.dictionary import (
    AdjustChannelsd,
    BinarizeMaskd,
    ChannelsToLabelsd,
    CTWindowd,
    LabelToChannelsd,
    ScaleIntensityForModalityd,
    ScaleIntensityNonCTd,
)
from pipeline.transforms.mask_values import auto_mask_threshold, mask_value_report

__all__ = [
    "AIR_HU",
    "BONE_WINDOW",
    "BRAIN_WINDOW",
    "CT_MODALITIES",
    "LUNG_WINDOW",
    "MEDIASTINUM_WINDOW",
    "NON_CT_MODALITIES",
    "SOFT_TISSUE_WINDOW",
    "AdjustChannels",
    "AdjustChannelsd",
    "AfterCache",
    "BinarizeMask",
    "BinarizeMaskd",
    "BoundedResize",
    "BoundedResized",
    "CTWindow",
    "CTWindowd",
    "ChannelsToLabels",
    "ChannelsToLabelsd",
    "LabelToChannels",
    "LabelToChannelsd",
    "ScaleIntensityForModality",
    "ScaleIntensityForModalityd",
    "ScaleIntensityNonCT",
    "ScaleIntensityNonCTd",
    "VolumeCleanup",
    "auto_mask_threshold",
    "fill_slice_holes",
    "mask_cleanup",
    "mask_value_report",
]
