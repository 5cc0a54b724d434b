"""The bundle configs' own helpers: on/off settings, device and speed settings, transform lists, unused settings."""

from __future__ import annotations

import logging

import pytest
import torch
from monai.transforms import Compose, Flipd, Lambdad

from pipeline.bundle import (
    amp_flag,
    channels_last_flag,
    choose_recipe,
    default_device,
    flag,
    gpu_flag,
    to_kwargs,
    transform_list,
    warn_unused,
)
from pipeline.inference import autocast

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


# value, device, whether the CPU runs bfloat16 natively, expected
AMP = [
    ("auto", "cuda:0", False, True),
    ("auto", "cpu", True, True),
    ("auto", "cpu", False, False),
    ("auto", torch.device("cpu"), True, True),
    ("auto", "mps", True, False),
    ("false", "cpu", True, False),
    ("true", "cpu", True, True),
    (False, "cuda:0", True, False),
]


@pytest.mark.parametrize("value, device, native, expected", AMP)
def test_amp_auto_is_on_where_bfloat16_is_native(value, device, native, expected, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert amp_flag(value, device) is expected


def test_amp_forced_on_an_emulating_cpu_says_it_is_slower(monkeypatch, caplog):
    monkeypatch.setattr(autocast, "native_bf16", lambda device: False)
    with caplog.at_level(logging.WARNING, logger="pipeline.bundle"):
        assert amp_flag("true", "cpu") is True
    assert "no native bfloat16" in caplog.text and "slower than float32" in caplog.text
    with pytest.raises(ValueError, match="--amp must be true or false, got 'maybe'"):
        amp_flag("maybe", "cpu")


@pytest.mark.parametrize(
    "value, device, expected",
    [("auto", "cuda:1", True), ("auto", "cpu", True), ("auto", torch.device("cpu"), True), ("auto", "mps", False),
     ("false", "cpu", False), (True, "mps", True)],
)  # fmt: skip
def test_channels_last_auto_is_on_for_cuda_and_cpu(value, device, expected):
    assert channels_last_flag(value, device) is expected


@pytest.mark.parametrize(
    "recipe, in_channels, expected",
    [("auto", 3, "colour"), ("auto", 1, "default"), (" Auto ", 2, "default"), ("seeds", 3, "seeds"),
     ("default", 3, "default"), ("colour", 1, "colour")],
)  # fmt: skip
def test_auto_recipe_follows_the_images(recipe, in_channels, expected):
    assert choose_recipe(recipe, in_channels, ["default", "colour", "seeds"]) == expected


def test_an_unknown_recipe_is_named():
    with pytest.raises(ValueError, match="--recipe must be auto or one of default, colour, seeds, got 'nnunet'"):
        choose_recipe("nnunet", 1, ["default", "colour", "seeds"])


def test_speed_settings():
    assert to_kwargs(True) == {"memory_format": torch.channels_last} and to_kwargs(False) is None
    assert default_device() == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def test_warn_unused_speaks_only_when_given(caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.bundle"):
        warn_unused(None, "recipe", "why")
        assert not caplog.records
        warn_unused("seeds", "recipe", "the model card gives the settings")
    assert caplog.messages == ["--recipe seeds has no effect here: the model card gives the settings"]
