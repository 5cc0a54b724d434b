"""The bundle configs' own helpers: on/off settings, device and speed settings, transform lists, unused settings."""

from __future__ import annotations

import logging

import pytest
import torch
from monai.transforms import Compose, Flipd, Lambdad

from pipeline.bundle import autocast_kwargs, default_device, flag, gpu_flag, to_kwargs, transform_list, warn_unused

A, B, C = (Lambdad(keys="x", func=lambda v, k=k: v + k) for k in (1, 2, 3))
FLIP = Flipd(keys="x", spatial_axis=0)

TRANSFORM_LISTS = [
    ([A, B], [A, B]),
    ([[A, B], C], [A, B, C]),
    ([A, None, [B]], [A, B]),
    ([Compose([A, B]), C], [A, B, C]),
    ([[], FLIP], [FLIP]),
]


@pytest.mark.parametrize("parts, expected", TRANSFORM_LISTS)
def test_transform_list_flattens_in_order(parts, expected):
    assert transform_list(parts) == expected


@pytest.mark.parametrize("part", ["resize", 3, [A, "resize"]])
def test_transform_list_refuses_what_is_not_a_transform(part):
    with pytest.raises(TypeError, match="transform_list takes transforms"):
        transform_list([A, part])


@pytest.mark.parametrize(
    "value, expected", [(True, True), ("false", False), ("Yes", True), (0, False), ("off", False), (1, True)]
)
def test_flag_reads_what_people_type(value, expected):
    assert flag(value, "flip_tta") is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, 0.5])
def test_flag_refuses_anything_else(value):
    with pytest.raises(ValueError, match="--flip_tta must be true or false"):
        flag(value, "flip_tta")


@pytest.mark.parametrize(
    "value, device, expected",
    [("auto", "cuda:0", True), ("auto", "cpu", False), ("true", "cpu", True), (False, "cuda:0", False)],
)
def test_gpu_flag_is_on_for_cuda_when_auto(value, device, expected):
    assert gpu_flag(value, "amp", device) is expected


def test_speed_settings():
    assert autocast_kwargs() == {"dtype": torch.bfloat16}
    assert autocast_kwargs("float16") == {"dtype": torch.float16}
    assert to_kwargs(True) == {"memory_format": torch.channels_last} and to_kwargs(False) is None
    assert default_device() == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def test_warn_unused_speaks_only_when_given(caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.bundle"):
        warn_unused(None, "recipe", "why")
        assert not caplog.records
        warn_unused("seeds", "recipe", "the model card gives the settings")
    assert caplog.messages == ["--recipe seeds has no effect here: the model card gives the settings"]
