"""Preprocessing with PyTorch's own CPU convolutions: the same images to float rounding; the model keeps oneDNN."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Resized
from torch import nn

from pipeline.inference.cpu_convolutions import CPU_CONVOLUTIONS, NativeCPUConvolutions, native_cpu_convolutions


@pytest.mark.parametrize("shape, size", [((1, 512, 512), 256), ((3, 300, 200), 96), ((1, 97, 131), 32)])
def test_anti_aliased_resize_matches_onednn_to_rounding(shape: tuple[int, ...], size: int) -> None:
    resize = Resized("image", spatial_size=(size, size), mode="bilinear", anti_aliasing=True)
    image = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    expected = resize({"image": MetaTensor(image.clone())})["image"]
    got = NativeCPUConvolutions(resize)({"image": MetaTensor(image.clone())})["image"]
    assert got.shape == expected.shape and float((got - expected).abs().max()) < 1e-5
    assert got.applied_operations[-1]["class"] == "Resize"  # still invertible: the metadata is MONAI's own


def test_the_switch_is_restored_even_when_the_transform_fails() -> None:
    def fails(_: object) -> None:
        assert torch.backends.mkldnn.enabled is False
        raise ValueError("bad slice")

    with pytest.raises(ValueError, match="bad slice"):
        NativeCPUConvolutions(fails)({})
    assert torch.backends.mkldnn.enabled is True and not CPU_CONVOLUTIONS.locked()


def test_a_cpu_network_waits_while_the_switch_is_off() -> None:
    """The predictor holds the lock while a CPU network runs; here another thread does, as the model would."""
    seen: list[bool] = []

    def model() -> None:
        with CPU_CONVOLUTIONS:
            seen.append(torch.backends.mkldnn.enabled)
            nn.Conv2d(1, 4, 3)(torch.rand(1, 1, 16, 16))

    with native_cpu_convolutions():
        thread = threading.Thread(target=model)
        thread.start()
        time.sleep(0.05)
        assert not seen  # blocked until preprocessing gives the switch back
    thread.join()
    assert seen == [True]
