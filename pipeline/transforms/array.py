"""Array transforms that prepare 2D slices for the networks: intensity scaling per modality, channel count, masks.

Inputs are channel-first ``(C, H, W)`` arrays as the slice loader produces them: float32, CT in Hounsfield units,
other modalities in raw values, masks in raw values (``{0, 1}``, ``{0, 255}``, JPEG-noisy ``0..255``, possibly three
channels). Every transform accepts ``numpy.ndarray``, ``torch.Tensor`` or ``monai.data.MetaTensor`` and returns the
same container type; a MetaTensor keeps its metadata and its ``applied_operations``, so ``Invertd`` still works
after these transforms.

Resizing and augmentation are MONAI's, with no class here:

- Resize to the network input with ``Resized(keys=["image", "label"], spatial_size=..., mode=("area", "nearest"))``:
  ``"area"`` (or ``"bilinear"``) for the image, ``"nearest"`` for the binarised mask so that it stays ``{0, 1}``.
  ``Invertd`` undoes it for validation at native resolution.
- The seeds' augmentation: ``RandFlipd(keys, prob=0.5, spatial_axis=1)`` (horizontal), ``RandFlipd(keys, prob=0.5,
  spatial_axis=0)`` (vertical), ``RandScaleIntensityFixedMeand("image", factors=0.2, prob=0.5)`` (the "random
  contrast" ``(x - mean) * (1 + f) + mean``), ``RandRotated`` and ``RandZoomd`` with ``mode=("bilinear",
  "nearest")``. Each randomises once per call and applies the same parameters to every key, so image and mask
  receive the same flip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms import ScaleIntensityRange, Transform
from monai.transforms.utils_pytorch_numpy_unification import percentile
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from pipeline.segments import label_values
from pipeline.transforms.mask_values import auto_mask_threshold

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
    "BinarizeMask",
    "CTWindow",
    "ChannelsToLabels",
    "LabelToChannels",
    "ScaleIntensityForModality",
    "ScaleIntensityNonCT",
]

#: The HU below which lies air (about -1000) and aerated lung, above which fat, soft tissue and bone: every CT slice in
#: Hounsfield units has values below it (outside the body or in the lungs), an image that never goes below 0 has none.
AIR_HU: float = -500.0
#: Lung window in HU, ``(lower, upper)``: level -300, width 1400; the lung recipes' default.
LUNG_WINDOW: tuple[float, float] = (-1000.0, 400.0)
#: Mediastinum window in HU: level 40, width 400.
MEDIASTINUM_WINDOW: tuple[float, float] = (-160.0, 240.0)
#: Abdominal soft-tissue window in HU: level 50, width 350.
SOFT_TISSUE_WINDOW: tuple[float, float] = (-125.0, 225.0)
#: Bone window in HU: level 300, width 1500.
BONE_WINDOW: tuple[float, float] = (-450.0, 1050.0)
#: Brain window in HU: level 40, width 80.
BRAIN_WINDOW: tuple[float, float] = (0.0, 80.0)

#: Modalities scaled by a fixed Hounsfield window (:class:`CTWindow`).
CT_MODALITIES: tuple[str, ...] = ("CT",)
#: Modalities scaled by image percentiles (:class:`ScaleIntensityNonCT`): DICOM modality codes (MR magnetic
#: resonance, CR/DX radiography, MG mammography, XA/RF fluoroscopy, US ultrasound, ES endoscopy, GM general and SM
#: slide microscopy, XC external camera, OP ophthalmic photography, PT PET, NM nuclear medicine, OT other) plus "XR",
#: not a DICOM code but the common umbrella for plain X-ray that the bundles accept as ``--modality XR``.
NON_CT_MODALITIES: tuple[str, ...] = (
    "MR",
    "CR",
    "DX",
    "XR",
    "MG",
    "XA",
    "RF",
    "US",
    "ES",
    "GM",
    "SM",
    "XC",
    "OP",
    "PT",
    "NM",
    "OT",
)

# ITU-R BT.601 luma weights for R, G, B.
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _check_output_range(b_min: float, b_max: float) -> None:
    if not b_min < b_max:
        raise ValueError(f"b_min must be smaller than b_max, got b_min={b_min}, b_max={b_max}.")


class CTWindow(Transform):
    """Map a Hounsfield-unit window to ``[b_min, b_max]``; values outside the window are clipped by default.

    A thin wrapper of ``monai.transforms.ScaleIntensityRange`` with the window given as ``(lower, upper)`` HU; the
    module constants (:data:`LUNG_WINDOW`, :data:`MEDIASTINUM_WINDOW`, :data:`SOFT_TISSUE_WINDOW`,
    :data:`BONE_WINDOW`, :data:`BRAIN_WINDOW`) hold the common ones.

    Input and output have the same shape ``(C, H, W)``; the output is float32.

    Args:
        window: ``(lower, upper)`` bounds in HU, lower < upper. Defaults to :data:`LUNG_WINDOW` ``(-1000, 400)``.
        b_min: output value of ``lower``. Defaults to 0.0.
        b_max: output value of ``upper``. Defaults to 1.0.
        clip: clip the output to ``[b_min, b_max]``. Defaults to True.

    Raises:
        ValueError: when ``window`` is not two increasing numbers or ``b_min >= b_max``.
    """

    backend = ScaleIntensityRange.backend

    def __init__(
        self,
        window: Sequence[float] = LUNG_WINDOW,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
    ) -> None:
        if len(window) != 2 or not float(window[0]) < float(window[1]):
            raise ValueError(f"window must be (lower, upper) in HU with lower < upper, got {window}.")
        _check_output_range(b_min, b_max)
        self.window = (float(window[0]), float(window[1]))
        self.scaler = ScaleIntensityRange(
            a_min=self.window[0], a_max=self.window[1], b_min=b_min, b_max=b_max, clip=clip, dtype=np.float32
        )

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Window ``img`` of shape ``(C, H, W)`` in HU; returns float32 of the same shape and container type."""
        return convert_to_dst_type(self.scaler(img), dst=img, dtype=np.float32)[0]


class ScaleIntensityNonCT(Transform):
    """Percentile min-max scaling for modalities without an absolute scale (X-ray, MRI, endoscopy, microscopy).

    The ``lower`` and ``upper`` percentiles are computed over the whole image, all channels together, so an RGB
    image keeps its colour relations; the range between them maps to ``[b_min, b_max]`` with
    ``monai.transforms.ScaleIntensityRange``. Two degenerate cases are handled where
    ``ScaleIntensityRangePercentiles`` would return the image shifted but neither scaled nor clipped:

    - the two percentiles coincide (a sparse image, e.g. fewer than 0.5 % bright pixels on a black background): the
      image minimum and maximum are used instead;
    - the image is constant: every value becomes ``b_min`` (no NaN, no warning).

    Input and output have the same shape ``(C, H, W)``; the output is float32.

    Args:
        lower: lower percentile in ``[0, 100)``. Defaults to 0.5.
        upper: upper percentile in ``(lower, 100]``. Defaults to 99.5.
        b_min: output value of the lower percentile. Defaults to 0.0.
        b_max: output value of the upper percentile. Defaults to 1.0.
        clip: clip the output to ``[b_min, b_max]``. Defaults to True.

    Raises:
        ValueError: when not ``0 <= lower < upper <= 100`` or ``b_min >= b_max``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        lower: float = 0.5,
        upper: float = 99.5,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
    ) -> None:
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got lower={lower}, upper={upper}.")
        _check_output_range(b_min, b_max)
        self.lower = lower
        self.upper = upper
        self.b_min = b_min
        self.b_max = b_max
        self.clip = clip

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Scale ``img`` of shape ``(C, H, W)``; returns float32 of the same shape and container type."""
        img_t = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        a_min, a_max = (float(v) for v in percentile(img_t, [self.lower, self.upper]))
        if a_max <= a_min:
            a_min, a_max = float(img_t.min()), float(img_t.max())
        if a_max <= a_min:
            out = torch.full_like(img_t, self.b_min)
        else:
            scaler = ScaleIntensityRange(a_min, a_max, self.b_min, self.b_max, clip=self.clip, dtype=np.float32)
            # ScaleIntensityRange wraps plain tensors as MetaTensor; unwrap so the input's metadata is copied back
            out = convert_to_tensor(scaler(img_t), track_meta=False)
        return convert_to_dst_type(out, dst=img, dtype=np.float32)[0]


class ScaleIntensityForModality(Transform):
    """Intensity scaling chosen by DICOM modality code: a HU window for CT, percentile scaling for the rest.

    ``"CT"`` uses :class:`CTWindow` with ``window``; every code in :data:`NON_CT_MODALITIES` (``"MR"``, ``"XR"``,
    ``"ES"`` endoscopy, ``"SM"`` microscopy, ``"OT"``, ...) uses :class:`ScaleIntensityNonCT` with ``lower`` and
    ``upper``. The code is case-insensitive. The bundle configs use this class, so ``--modality XR`` switches a run
    from CT windowing to percentile scaling.

    Input and output have the same shape ``(C, H, W)``; the output is float32 in ``[b_min, b_max]`` when ``clip``.

    Args:
        modality: DICOM modality code. Defaults to ``"CT"``.
        window: HU window for CT, ``(lower, upper)``. Defaults to :data:`LUNG_WINDOW`.
        lower: lower percentile for other modalities. Defaults to 0.5.
        upper: upper percentile for other modalities. Defaults to 99.5.
        b_min: output minimum. Defaults to 0.0.
        b_max: output maximum. Defaults to 1.0.
        clip: clip the output to ``[b_min, b_max]``. Defaults to True.

    Raises:
        ValueError: when ``modality`` is not an accepted code (the message lists them), or the arguments of the
            chosen scaler are invalid.
    """

    backend = ScaleIntensityNonCT.backend

    def __init__(
        self,
        modality: str = "CT",
        window: Sequence[float] = LUNG_WINDOW,
        lower: float = 0.5,
        upper: float = 99.5,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
    ) -> None:
        code = modality.strip().upper() if isinstance(modality, str) else None
        if code in CT_MODALITIES:
            self.scaler: CTWindow | ScaleIntensityNonCT = CTWindow(window, b_min=b_min, b_max=b_max, clip=clip)
        elif code in NON_CT_MODALITIES:
            self.scaler = ScaleIntensityNonCT(lower, upper, b_min=b_min, b_max=b_max, clip=clip)
        else:
            accepted = ", ".join(CT_MODALITIES + NON_CT_MODALITIES)
            raise ValueError(f"unknown modality {modality!r}; accepted DICOM modality codes: {accepted}.")
        self.modality = code

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Scale ``img`` of shape ``(C, H, W)``; returns float32 of the same shape and container type."""
        return self.scaler(img)


class AdjustChannels(Transform):
    """Convert between grayscale and RGB so that every image has the channel count the network expects.

    - 1 -> 3: the channel is repeated;
    - 3 -> 1: ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``;
    - 4 (RGBA): the alpha channel is dropped first, then as for 3;
    - equal counts: returned unchanged.

    Input ``(C, H, W)``, output ``(num_channels, H, W)``. Floating inputs keep their dtype; the luma of an integer
    image is float32.

    Args:
        num_channels: channels wanted, 1 or 3.

    Raises:
        ValueError: when ``num_channels`` is not 1 or 3 (at construction), or the input has a channel count that
            cannot be converted, e.g. 2 (at call time; the message gives the shape).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_channels: int) -> None:
        if num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {num_channels}.")
        self.num_channels = num_channels

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Adjust ``img`` of shape ``(C, H, W)`` to ``(num_channels, H, W)``, same container type."""
        shape = tuple(img.shape)
        if len(shape) < 2:
            raise ValueError(f"expected a channel-first image (C, H, W), got shape {shape}.")
        if shape[0] == self.num_channels:
            return img
        img_t = convert_to_tensor(img, track_meta=False)
        if shape[0] == 4:
            img_t = img_t[:3]
        channels = img_t.shape[0]
        if channels == 3 and self.num_channels == 3:
            out = img_t
        elif channels == 1 and self.num_channels == 3:
            out = img_t.repeat(3, *([1] * (img_t.ndim - 1)))
        elif channels == 3 and self.num_channels == 1:
            dtype = img_t.dtype if img_t.is_floating_point() else torch.float32
            weights = torch.tensor(_LUMA_WEIGHTS, dtype=dtype, device=img_t.device)
            out = (img_t.to(dtype) * weights.reshape(3, *([1] * (img_t.ndim - 1)))).sum(dim=0, keepdim=True)
        else:
            raise ValueError(
                f"cannot convert an image of shape {shape} to {self.num_channels} channels;"
                " supported: 1 -> 3, 3 -> 1, 4 (RGBA) -> 3 or 1, and equal counts."
            )
        return convert_to_dst_type(out, dst=img, dtype=out.dtype)[0]


class BinarizeMask(Transform):
    """Turn a raw mask into a one-channel float32 ``{0, 1}`` mask.

    A multi-channel mask (RGB or RGBA JPEG/PNG) is first reduced to one channel by the maximum over channels, so a
    mask drawn in any colour on black counts. A value is foreground when it is strictly greater than the threshold.
    With ``threshold=None`` it is chosen by :func:`~pipeline.transforms.mask_values.auto_mask_threshold` from the mask's
    maximum: 0.5 when ``max <= 1`` (``{0, 1}`` and all-zero masks), 127.5 when ``max <= 255`` (``{0, 255}`` and
    JPEG-noisy masks, whose background stays near 0 and foreground near 255), else half the maximum (16-bit masks).
    An all-zero mask stays all zero. Label maps such as ``{0, 1, 2}`` are not binary masks; the pre-flight check
    reports them with :func:`~pipeline.transforms.mask_values.mask_value_report`.

    Input ``(C, H, W)`` (any number of spatial dimensions), output ``(1, H, W)`` float32.

    Args:
        threshold: fixed threshold, or None (default) for the automatic one above.

    Raises:
        ValueError: when ``threshold`` is not a finite number, or the input has no channel dimension.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, threshold: float | None = None) -> None:
        if threshold is not None and not np.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number or None, got {threshold}.")
        self.threshold = threshold

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Binarise ``img`` of shape ``(C, H, W)``; returns ``(1, H, W)`` float32, same container type."""
        if img.ndim < 2:
            raise ValueError(f"expected a channel-first mask (C, H, W), got shape {tuple(img.shape)}.")
        img_t = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        reduced = img_t.amax(dim=0, keepdim=True)
        threshold = auto_mask_threshold(reduced) if self.threshold is None else self.threshold
        out = (reduced > threshold).to(torch.float32)
        return convert_to_dst_type(out, dst=img, dtype=np.float32)[0]


class LabelToChannels(Transform):
    """A mask or label map -> one channel per structure: the targets a network of those structures is trained on.

    One structure (the binary case) gives what :class:`BinarizeMask` gives: one ``{0, 1}`` channel, the mask
    binarised at its automatic threshold, so a ``{0, 255}`` or JPEG-noisy mask still works. Several structures give a
    one-hot map of ``K + 1`` channels: channel 0 the background (value 0), channel ``c`` the structure of the ``c``-th
    smallest value, as the network's softmax channels are ordered. A label map's values must be the background or one
    of the structures' values; anything else (a value the datalist does not name, the fractions of an interpolated
    or JPEG label map) is refused, with the values found, rather than guessed at.

    Input ``(C, H, W)`` (several identical channels, as an RGB label map has, count as one), output ``(1, H, W)`` or
    ``(K + 1, H, W)`` float32, the same container type.

    Args:
        structures: the label values, or structures (:class:`pipeline.segments.Structure` or their dicts).

    Raises:
        ValueError: no structure, or a value out of 1-255 or repeated.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, structures: Sequence[int | Any]) -> None:
        values = label_values(structures)
        if not values or len(set(values)) != len(values) or not all(1 <= v <= 255 for v in values):
            raise ValueError(f"structures need distinct label values in 1-255, got {list(values)}.")
        self.values = tuple(sorted(values))
        self.binarizer = BinarizeMask() if len(self.values) == 1 else None

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Convert ``img`` of shape ``(C, H, W)``; see the class docstring for the output."""
        if self.binarizer is not None:
            return self.binarizer(img)
        if img.ndim < 2:
            raise ValueError(f"expected a channel-first label map (C, H, W), got shape {tuple(img.shape)}.")
        labels = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        if labels.shape[0] > 1 and not bool((labels == labels[:1]).all()):
            raise ValueError(f"a label map has one channel; this one has {labels.shape[0]} different channels.")
        labels = labels[:1]
        found = torch.unique(labels)
        unknown = [float(v) for v in found if float(v) != 0 and float(v) not in self.values]
        if unknown:
            shown = ", ".join(f"{v:g}" for v in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
            raise ValueError(
                f"label map values {shown} are not among the structures' values {list(self.values)} (0: background)."
            )
        channels = [labels == 0] + [labels == v for v in self.values]
        out = torch.cat(channels).to(torch.float32)
        return convert_to_dst_type(out, dst=img, dtype=np.float32)[0]


class ChannelsToLabels(Transform):
    """A prediction's channels -> a label map in the dataset's label values: the inverse of :class:`LabelToChannels`.

    One channel (one structure): the thresholded ``{0, 1}`` mask times the structure's value. Several channels (one-hot
    masks or probabilities, background first): the structure of the largest channel at each pixel, by value; 0 where
    the background wins, or where every channel is 0 (a pixel a clean-up step removed).

    Input ``(C, H, W)``, output ``(1, H, W)`` float32 holding whole label values, the same container type.

    Args:
        structures: the label values, or structures (:class:`pipeline.segments.Structure` or their dicts), as the
            model was trained on them.
        threshold: a single channel's foreground threshold (its values are a thresholded mask or probabilities).

    Raises:
        ValueError: no structure, repeated values, or an input whose channels do not fit the structures.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, structures: Sequence[int | Any], threshold: float = 0.5) -> None:
        values = label_values(structures)
        if not values or len(set(values)) != len(values):
            raise ValueError(f"structures need distinct label values, got {list(values)}.")
        self.values = tuple(sorted(values))
        self.threshold = threshold

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Convert ``img`` of shape ``(C, H, W)``; see the class docstring for the output."""
        pred = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        expected = 1 if len(self.values) == 1 else len(self.values) + 1
        if pred.shape[0] != expected:
            raise ValueError(
                f"a prediction of {len(self.values)} structure(s) has {expected} channel(s), got shape "
                f"{tuple(pred.shape)}."
            )
        if expected == 1:
            out = (pred > self.threshold).to(torch.float32) * self.values[0]
        else:
            lookup = torch.tensor((0, *self.values), dtype=torch.float32, device=pred.device)
            out = lookup[pred.argmax(dim=0, keepdim=True)] * (pred.amax(dim=0, keepdim=True) > 0)
        return convert_to_dst_type(out, dst=img, dtype=np.float32)[0]
