"""Dictionary wrappers of :mod:`pipeline.transforms.array`: each holds one array transform and applies it to
every key in ``keys``; the logic lives in the array class.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform

from pipeline.transforms.array import (
    LUNG_WINDOW,
    AdjustChannels,
    BinarizeMask,
    ChannelsToLabels,
    CTWindow,
    LabelToChannels,
    ScaleIntensityForModality,
    ScaleIntensityNonCT,
)

__all__ = [
    "AdjustChannelsd",
    "BinarizeMaskd",
    "CTWindowd",
    "ChannelsToLabelsd",
    "LabelToChannelsd",
    "ScaleIntensityForModalityd",
    "ScaleIntensityNonCTd",
]


class CTWindowd(MapTransform):
    """Dictionary-based wrapper of :class:`pipeline.transforms.CTWindow`.

    Args:
        keys: keys of the items to window, each ``(C, H, W)`` in HU.
        window: ``(lower, upper)`` bounds in HU. Defaults to ``LUNG_WINDOW`` ``(-1000, 400)``.
        b_min: output value of ``lower``. Defaults to 0.0.
        b_max: output value of ``upper``. Defaults to 1.0.
        clip: clip the output to ``[b_min, b_max]``. Defaults to True.
        allow_missing_keys: don't raise an exception if a key is missing. Defaults to False.

    Raises:
        ValueError: see :class:`pipeline.transforms.CTWindow`.
    """

    backend = CTWindow.backend

    def __init__(
        self,
        keys: KeysCollection,
        window: Sequence[float] = LUNG_WINDOW,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.windower = CTWindow(window, b_min=b_min, b_max=b_max, clip=clip)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.windower(d[key])
        return d


class ScaleIntensityNonCTd(MapTransform):
    """Dictionary-based wrapper of :class:`pipeline.transforms.ScaleIntensityNonCT`.

    Args:
        keys: keys of the items to scale, each ``(C, H, W)``.
        lower: lower percentile. Defaults to 0.5.
        upper: upper percentile. Defaults to 99.5.
        b_min: output value of the lower percentile. Defaults to 0.0.
        b_max: output value of the upper percentile. Defaults to 1.0.
        clip: clip the output to ``[b_min, b_max]``. Defaults to True.
        allow_missing_keys: don't raise an exception if a key is missing. Defaults to False.

    Raises:
        ValueError: see :class:`pipeline.transforms.ScaleIntensityNonCT`.
    """

    backend = ScaleIntensityNonCT.backend

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 0.5,
        upper: float = 99.5,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleIntensityNonCT(lower, upper, b_min=b_min, b_max=b_max, clip=clip)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d


class ScaleIntensityForModalityd(MapTransform):
    """Dictionary-based wrapper of :class:`pipeline.transforms.ScaleIntensityForModality`.

    Args:
        keys: keys of the items to scale, each ``(C, H, W)``.
        modality: DICOM modality code, ``"CT"`` or one of ``NON_CT_MODALITIES``. Defaults to ``"CT"``.
        window: HU window for CT. Defaults to ``LUNG_WINDOW``.
        lower: lower percentile for other modalities. Defaults to 0.5.
        upper: upper percentile for other modalities. Defaults to 99.5.
        b_min: output minimum. Defaults to 0.0.
        b_max: output maximum. Defaults to 1.0.
        clip: clip the output to ``[b_min, b_max]``. Defaults to True.
        allow_missing_keys: don't raise an exception if a key is missing. Defaults to False.

    Raises:
        ValueError: see :class:`pipeline.transforms.ScaleIntensityForModality`.
    """

    backend = ScaleIntensityForModality.backend

    def __init__(
        self,
        keys: KeysCollection,
        modality: str = "CT",
        window: Sequence[float] = LUNG_WINDOW,
        lower: float = 0.5,
        upper: float = 99.5,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScaleIntensityForModality(
            modality, window=window, lower=lower, upper=upper, b_min=b_min, b_max=b_max, clip=clip
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d


class AdjustChannelsd(MapTransform):
    """Dictionary-based wrapper of :class:`pipeline.transforms.AdjustChannels`.

    Args:
        keys: keys of the items to adjust, each ``(C, H, W)``.
        num_channels: channels wanted, 1 or 3.
        allow_missing_keys: don't raise an exception if a key is missing. Defaults to False.

    Raises:
        ValueError: see :class:`pipeline.transforms.AdjustChannels`.
    """

    backend = AdjustChannels.backend

    def __init__(self, keys: KeysCollection, num_channels: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.adjuster = AdjustChannels(num_channels)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.adjuster(d[key])
        return d


class BinarizeMaskd(MapTransform):
    """Dictionary-based wrapper of :class:`pipeline.transforms.BinarizeMask`.

    Args:
        keys: keys of the masks to binarise, each ``(C, H, W)``; each becomes ``(1, H, W)`` float32 ``{0, 1}``.
        threshold: fixed threshold, or None (default) for the automatic one.
        allow_missing_keys: don't raise an exception if a key is missing. Defaults to False.

    Raises:
        ValueError: see :class:`pipeline.transforms.BinarizeMask`.
    """

    backend = BinarizeMask.backend

    def __init__(self, keys: KeysCollection, threshold: float | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.binarizer = BinarizeMask(threshold)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.binarizer(d[key])
        return d


class LabelToChannelsd(MapTransform):
    """Dictionary-based wrapper of :class:`pipeline.transforms.LabelToChannels`.

    Args:
        keys: keys of the masks or label maps, each ``(C, H, W)``; each becomes one channel per structure.
        structures: the label values, or the structures (the bundles pass ``@structures``).
        allow_missing_keys: don't raise an exception if a key is missing. Defaults to False.

    Raises:
        ValueError: see :class:`pipeline.transforms.LabelToChannels`.
    """

    backend = LabelToChannels.backend

    def __init__(self, keys: KeysCollection, structures: Sequence, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = LabelToChannels(structures)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class ChannelsToLabelsd(MapTransform):
    """Dictionary-based wrapper of :class:`pipeline.transforms.ChannelsToLabels`.

    Args:
        keys: keys of the predictions, each ``(C, H, W)``; each becomes a ``(1, H, W)`` map of label values.
        structures: the label values, or the structures (the bundles pass ``@structures``).
        threshold: a single channel's foreground threshold.
        allow_missing_keys: don't raise an exception if a key is missing. Defaults to False.
    """

    backend = ChannelsToLabels.backend

    def __init__(
        self, keys: KeysCollection, structures: Sequence, threshold: float = 0.5, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ChannelsToLabels(structures, threshold)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
