"""PyTorch's own CPU convolutions for preprocessing, where oneDNN's are slow, without touching the model's.

MONAI's anti-aliased ``Resized`` smooths each slice with a separable Gaussian: two single-channel convolutions with
5 x 1 and 1 x 5 kernels for a 2x reduction. oneDNN, PyTorch's default CPU backend, spends 1.3 ms on each for a
512 x 512 slice; PyTorch's native kernels take under half of that. Resizing a 512 x 512 slice to 256 x 256 takes
2.1 ms with them instead of 5.0 ms on a 2-core CPU; the results differ by float rounding
(under 1e-5 on [0, 1] intensities, tested). The network keeps oneDNN, which is much faster for its many-channel
convolutions.

The switch (``torch.backends.mkldnn.enabled``) is process-wide, so :func:`native_cpu_convolutions` holds
:data:`CPU_CONVOLUTIONS` while it is off, and :class:`~pipeline.inference.SlicePredictor` holds the same lock while a
CPU network runs: the model never runs with the switch off, even with preprocessing on another thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["CPU_CONVOLUTIONS", "NativeCPUConvolutions", "native_cpu_convolutions"]

#: Held while oneDNN is switched off for preprocessing, and while a CPU network runs.
CPU_CONVOLUTIONS = threading.Lock()


@contextmanager
def native_cpu_convolutions() -> Iterator[None]:
    """Switch oneDNN off for CPU convolutions inside the block (and back to what it was after it)."""
    with CPU_CONVOLUTIONS:
        before = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            yield
        finally:
            torch.backends.mkldnn.enabled = before


class NativeCPUConvolutions:
    """Run ``transform`` inside :func:`native_cpu_convolutions`.

    Args:
        transform: a (dictionary) transform, e.g. the bundle's inference preprocessing.
    """

    def __init__(self, transform: Callable[[Any], Any]) -> None:
        self.transform = transform

    def __call__(self, data: Any) -> Any:
        with native_cpu_convolutions():
            return self.transform(data)
