"""A few validation cases in TensorBoard each epoch: image, ground truth and prediction side by side."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events

__all__ = ["ValidationImages"]


def _grey(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, h, w) -> (1, H, W) in [0, 1]: the channel mean, resized to ``size`` and scaled to its own range."""
    image = image.detach().float().cpu().mean(dim=0, keepdim=True)
    if tuple(image.shape[-2:]) != size:
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else torch.zeros_like(image)


def _mask(mask: torch.Tensor) -> torch.Tensor:
    """(1, H, W) grey: a binary mask as it is; a one-hot (K + 1, H, W) one as its structure index over ``K``."""
    mask = mask.detach().float().cpu()
    if mask.shape[0] == 1:
        return (mask > 0.5).float()
    return (mask.argmax(dim=0, keepdim=True) / (mask.shape[0] - 1)).float()


class ValidationImages:
    """Write the first ``num_images`` validation cases to TensorBoard at every validation, as one picture each.

    Each picture is the image, its ground truth and the prediction side by side, on the ground truth's (native) grid,
    tagged ``validation/<k>`` at the trainer's epoch, so TensorBoard's slider steps through training.

    Args:
        log_dir: the TensorBoard folder (the run's ``logs/``).
        num_images: how many cases, from the start of the validation set.
        image_key: the evaluator output's image; ``label_key`` and ``pred_key`` likewise.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        num_images: int = 4,
        image_key: str = "image",
        label_key: str = "label",
        pred_key: str = "pred",
    ) -> None:
        self.log_dir = os.fspath(log_dir)
        self.num_images = num_images
        self.keys = (image_key, label_key, pred_key)
        self._writer = None
        self._pictures: list[torch.Tensor] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _started(self, _: Engine) -> None:
        self._pictures = []

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output
        for item in output if isinstance(output, list) else []:
            if len(self._pictures) >= self.num_images:
                return
            image, label, pred = (item[k] for k in self.keys)
            size = tuple(label.shape[-2:])
            parts = [_grey(image, size), _mask(label), _mask(pred)]
            self._pictures.append(torch.cat(parts, dim=-1))

    def _write(self, engine: Engine) -> None:
        if not self._pictures:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self.log_dir)
        for k, picture in enumerate(self._pictures):
            self._writer.add_image(f"validation/{k}", picture, global_step=engine.state.epoch)
        self._writer.flush()
