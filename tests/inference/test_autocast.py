"""bfloat16 autocast in the inferers and the predictor, on the CPU as on a GPU, and which CPUs run it natively."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer
from torch import nn

from pipeline.inference import AutocastSimpleInferer, AutocastSlidingWindowInferer, SlicePredictor, native_bf16


class Recorder(nn.Module):
    """A convolution that records the dtype its output was computed in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        self.dtypes.append(out.dtype)
        return out


INFERERS = [
    (AutocastSimpleInferer, SimpleInferer, {}),
    (AutocastSlidingWindowInferer, SlidingWindowInferer, {"roi_size": (16, 16), "sw_batch_size": 2, "overlap": 0.25}),
]


@pytest.mark.parametrize("autocast, monai, kwargs", INFERERS, ids=["simple", "sliding_window"])
@pytest.mark.parametrize("amp", [True, False])
def test_autocast_inferers_compute_in_bf16_and_return_float32(autocast, monai, kwargs, amp):
    """MONAI's inferer with ``amp``: the same arguments and logits (to bf16's precision), computed in bf16."""
    torch.manual_seed(0)
    net, x = Recorder(), torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        out = autocast(**kwargs, amp=amp)(x, net)
        reference = monai(**kwargs)(x, net)
    assert net.dtypes[0] == (torch.bfloat16 if amp else torch.float32)
    assert net.dtypes[-1] == torch.float32  # the reference, without autocast
    assert out.dtype == torch.float32 and out.shape == (2, 2, 24, 24)
    # bf16 keeps 8 bits of mantissa: logits of order 1 agree to about 1e-2
    torch.testing.assert_close(out, reference, rtol=0.02, atol=0.02)
    if not amp:
        torch.testing.assert_close(out, reference, rtol=0, atol=0)


def test_autocast_inferer_trains_float32_weights():
    """The forward pass in bf16, the loss and the gradients on float32 weights: a training step moves them."""
    torch.manual_seed(0)
    net = Recorder()
    before = net.conv.weight.detach().clone()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    logits = AutocastSimpleInferer(amp=True)(torch.rand(2, 1, 8, 8), net)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    assert logits.dtype == loss.dtype == torch.float32 and net.dtypes == [torch.bfloat16]
    loss.backward()
    assert net.conv.weight.grad.dtype == torch.float32
    optimizer.step()
    assert not torch.equal(net.conv.weight, before)


@pytest.mark.parametrize(
    "device, avx512_bf16, amx, expected",
    [("cpu", True, False, True), ("cpu", False, True, True), ("cpu", False, False, False),
     (torch.device("cpu"), True, False, True), ("cuda:0", False, False, True), ("mps", True, True, False)],
)  # fmt: skip
def test_native_bf16(device, avx512_bf16, amx, expected, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert native_bf16(device) is expected


@pytest.mark.parametrize("amp", [True, False])
def test_predictor_autocasts_on_the_cpu(amp):
    """``--amp`` reaches the CPU predictor (it was ignored there before): bf16 inside, float32 logits out."""
    net = Recorder()
    predictor = SlicePredictor(net, lambda item: item, SimpleInferer(), batch_size=2, device="cpu", amp=amp)
    with torch.inference_mode():
        logits = predictor.forward_batch(torch.rand(2, 1, 16, 16))
    assert net.dtypes == [torch.bfloat16 if amp else torch.float32]
    assert logits.dtype == torch.float32
