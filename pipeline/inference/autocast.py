"""bfloat16 autocast around an inferer, on any device, and whether a CPU runs bfloat16 natively.

MONAI's engines autocast on CUDA only (``torch.autocast("cuda")`` inside ``SupervisedTrainer`` and
``SupervisedEvaluator``). :class:`AutocastSimpleInferer` and :class:`AutocastSlidingWindowInferer` (MONAI's inferers
with an ``amp`` argument) move the autocast into the inferer, so that training, validation, evaluation and inference
run in bfloat16 wherever the batch is: the network's forward pass in bfloat16, the logits handed back in float32, so
that the loss, the activation and the metrics stay in float32 and bfloat16 needs no gradient scaler.

On a CPU with native bfloat16 instructions (x86 AVX512-BF16 or AMX) the convolutions run about twice as fast as in
float32 (``docs/evidence/cpu-speed.md``); elsewhere bfloat16 is emulated and slower, which :func:`native_bf16` tells.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer
from torch import nn

__all__ = ["AutocastSimpleInferer", "AutocastSlidingWindowInferer", "native_bf16"]


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively: any CUDA device, or a CPU with AVX512-BF16 or AMX.

    Args:
        device: a ``torch.device`` or its name.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return True
    if kind != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own probes of the CPU flags
    return any(bool(getattr(torch.cpu, check, lambda: False)()) for check in checks)


class _Autocast:
    """Run the inferer's ``__call__`` under bfloat16 autocast when ``self.amp``; floating tensors come back float32."""

    amp: bool

    def __call__(self, inputs: torch.Tensor, network: nn.Module | Any, *args: Any, **kwargs: Any) -> Any:
        if not self.amp:
            return super().__call__(inputs, network, *args, **kwargs)  # type: ignore[misc]
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16):
            outputs = super().__call__(inputs, network, *args, **kwargs)  # type: ignore[misc]
        if isinstance(outputs, torch.Tensor) and outputs.is_floating_point():
            return outputs.float()
        return outputs


class AutocastSimpleInferer(_Autocast, SimpleInferer):
    """MONAI's ``SimpleInferer`` with ``amp``: the network under bfloat16 autocast on its input's device, float32
    logits out (training's inferer).

    Args:
        amp: autocast or not (the bundles' ``use_amp``).
    """

    def __init__(self, amp: bool = False) -> None:
        super().__init__()
        self.amp = bool(amp)


class AutocastSlidingWindowInferer(_Autocast, SlidingWindowInferer):
    """MONAI's ``SlidingWindowInferer``, same arguments, plus ``amp``: each window's forward pass under bfloat16
    autocast on the input's device; the blended logits come back float32 (validation's, evaluation's and inference's
    inferer).

    Args:
        roi_size: the window, e.g. the training size (H, W).
        args: ``SlidingWindowInferer``'s other arguments.
        amp: autocast or not (the bundles' ``use_amp``).
        kwargs: ``SlidingWindowInferer``'s keyword arguments (``sw_batch_size``, ``overlap``, ...).

    Example::

        inferer = AutocastSlidingWindowInferer(roi_size=(192, 192), sw_batch_size=4, overlap=0.25, amp=True)
        logits = inferer(images, network)  # (B, C, H, W) float32, computed in bfloat16
    """

    def __init__(self, roi_size: Sequence[int] | int, *args: Any, amp: bool = False, **kwargs: Any) -> None:
        super().__init__(roi_size, *args, **kwargs)
        self.amp = bool(amp)
