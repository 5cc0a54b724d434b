"""Batched 2D prediction: the bundle's preprocessing, inferer and postprocessing applied to a list of slices.

The same objects that validation uses during training (``Resized`` to the model's input size, a
``SlidingWindowInferer``, sigmoid, ``Invertd`` back to the native grid, threshold) are applied here to any list of
channel-first slices: the slices of a DICOM series, or 2D images. A mask therefore comes back on the slice's own
pixel grid, whatever size the model ran at.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from monai.data import DataLoader, Dataset, decollate_batch
from monai.inferers import Inferer
from torch import nn

from pipeline.inference.cpu_convolutions import CPU_CONVOLUTIONS, NativeCPUConvolutions

__all__ = ["NonFiniteOutputError", "SlicePredictor"]

logger = logging.getLogger("pipeline.inference")


class NonFiniteOutputError(ValueError):
    """The network gave NaN or infinite outputs: no mask made from them would mean anything."""


def _check_finite(logits: torch.Tensor) -> None:
    """Raise :class:`NonFiniteOutputError` when ``logits`` hold a NaN or an infinity (a mask thresholded from them
    would look like a confident, empty result)."""
    finite = torch.isfinite(logits)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise NonFiniteOutputError(
            f"the model's output holds {bad} NaN or infinite values of {logits.numel()}: the weights are broken (for "
            "example a normalisation layer with a negative running variance) or were saved from a diverged run; "
            "nothing is written from it. Use weights from a healthy run."
        )


class SlicePredictor:
    """Run a 2D network over slices in batches and return one mask per slice at the slice's native size.

    Args:
        network: a 2D segmentation network returning logits (B, out_channels, H, W); weights already loaded.
        preprocessing: dictionary transform applied to each item (``{"image": ...}`` plus whatever the loader
            needs); must leave ``"image"`` as a (C, h, w) MetaTensor of the model's input size and be invertible
            (``Invertd`` uses it to map the prediction back).
        inferer: MONAI inferer called as ``inferer(images, network)`` (``SlidingWindowInferer`` for 2D slices
            larger than the model input).
        postprocessing: dictionary transform applied to each decollated item after ``"pred"`` (logits) is set;
            typically sigmoid, ``Invertd`` and a threshold. ``None`` keeps the logits.
        batch_size: slices per forward pass.
        device: where the network runs.
        amp: run the forward pass under bfloat16 autocast, on a GPU or a CPU (the bundles' ``--amp``: on where the
            device runs bfloat16 natively, :func:`pipeline.bundle.amp_flag`).

    Attributes:
        forward_seconds: cumulated time spent in the inferer (the model) since the last ``reset_timers``,
            synchronised on CUDA, so that callers can report model-only against end-to-end time.
    """

    def __init__(
        self,
        network: nn.Module,
        preprocessing: Callable[[dict], dict],
        inferer: Inferer,
        postprocessing: Callable[[dict], dict] | None = None,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
        amp: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.network = network.eval()
        self.preprocessing = preprocessing
        self.inferer = inferer
        self.postprocessing = postprocessing
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.amp = bool(amp)
        self.forward_seconds = 0.0

    def reset_timers(self) -> None:
        """Set ``forward_seconds`` back to zero."""
        self.forward_seconds = 0.0

    def forward_batch(self, images: torch.Tensor) -> torch.Tensor:
        """The inferer and network on a preprocessed batch (B, C, h, w), timed into ``forward_seconds``.

        Returns:
            float32 logits (B, out_channels, h, w) on the network's device.
        """
        start = time.perf_counter()
        on_cpu = CPU_CONVOLUTIONS if self.device.type == "cpu" else contextlib.nullcontext()
        with on_cpu, torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.inferer(images.to(self.device), self.network)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.forward_seconds += time.perf_counter() - start
        _check_finite(logits)
        return logits.float()

    def check_input(self, items: Sequence[dict[str, Any]]) -> None:
        """Run one preprocessed item through the network, so that a size or channel mismatch, or weights that give
        NaN, fail before a run.

        Args:
            items: at least one item as passed to ``__call__``.

        Raises:
            ValueError: the network cannot take the preprocessed image (its message says what it needs).
            NonFiniteOutputError: the network's output for it holds NaN or infinite values.
        """
        image = self.preprocessing(dict(items[0]))["image"]
        with torch.inference_mode():
            self.forward_batch(image[None])

    def prepare(self, items: Sequence[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        """Preprocess ``items`` and collate them into batches of ``batch_size``; no model runs.

        The first of the three steps of :meth:`__call__`; :class:`~pipeline.inference.InferenceRunner` runs it on its
        reading thread, ahead of the model.

        Args:
            items: dictionaries the preprocessing accepts, e.g. ``{"image": path}`` for files or
                ``{"image": MetaTensor (C, H, W)}`` for slices already in memory.

        Returns:
            The collated batches, preprocessed as they are iterated: ``"image"`` (B, C, h, w) at the model's input
            size, with the metadata that inverting needs.
        """
        transform = NativeCPUConvolutions(self.preprocessing)  # faster anti-aliasing; the model keeps oneDNN
        return DataLoader(Dataset(list(items), transform=transform), batch_size=self.batch_size)

    def infer(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Set ``batch["pred"]``: float32 logits (B, out_channels, h, w) on the CPU. The only step on the model."""
        with torch.inference_mode():
            batch["pred"] = self.forward_batch(batch["image"]).cpu()
        return batch

    def restore(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """Decollate an inferred batch and postprocess each item: typically sigmoid, inverse resize and threshold.

        Returns:
            One tensor per item, in order: ``postprocessing``'s ``"pred"``.
        """
        predictions: list[torch.Tensor] = []
        with torch.inference_mode():
            for item in decollate_batch(batch):
                if self.postprocessing is not None:
                    item = self.postprocessing(item)
                predictions.append(item["pred"])
        return predictions

    def __call__(self, items: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        """Predict every item: :meth:`prepare`, :meth:`infer` and :meth:`restore`, batch after batch.

        Args:
            items: dictionaries the preprocessing accepts, e.g. ``{"image": path}`` for files or
                ``{"image": MetaTensor (C, H, W)}`` for slices already in memory.

        Returns:
            One tensor per item, in order: ``postprocessing``'s ``"pred"``, typically (out_channels, H, W) at the
            item's native H, W.
        """
        return [pred for batch in self.prepare(items) for pred in self.restore(self.infer(batch))]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(network={type(self.network).__name__}, batch_size={self.batch_size})"
