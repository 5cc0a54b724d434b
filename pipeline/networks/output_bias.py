"""Start a segmentation network at the foreground prior instead of at 50 %.

An untrained network's logits centre wherever its random weights put them, so the first optimizer steps are spent
moving every pixel's probability towards the class balance (Lin et al., "Focal Loss for Dense Object Detection",
ICCV 2017, sec. 3.3, set the output bias to the prior for this reason). :func:`init_output_bias` measures where the
logits of the network as built actually centre on a few training images, then shifts the bias of its output
convolution so that the mean predicted probability equals the foreground fraction of their masks: per channel through
the sigmoid for one output channel (one structure), jointly through the softmax for several (background and
structures, each channel's mean probability its share of the pixels). It works for any network whose logits are the
output convolution plus terms that do not depend on its bias (a residual branch, a bilinear upsampling), which covers
every network in the bundles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from pipeline.bundle import flag

__all__ = ["foreground_prior", "init_output_bias", "output_convolution"]

logger = logging.getLogger(__name__)

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_PRIOR_RANGE = (1e-3, 1.0 - 1e-3)


def output_convolution(network: nn.Module, images: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """The convolution that runs last with as many channels as the output, and the network's logits on ``images``.

    Args:
        network: the network, in the mode it should be measured in.
        images: ``(B, C, H, W)`` input batch.

    Raises:
        ValueError: when no convolution with a bias produces as many channels as the network's output.
    """
    ran: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda module, _, out: ran.append(module))
        for m in network.modules()
        if isinstance(m, _CONVS) and m.bias is not None
    ]
    try:
        with torch.no_grad():
            logits = network(images)
    finally:
        for hook in hooks:
            hook.remove()
    last = [m for m in ran if m.out_channels == logits.shape[1]]
    if not last:
        raise ValueError(
            f"{type(network).__name__} has no output convolution with a bias and {logits.shape[1]} channels."
        )
    return last[-1], logits


def foreground_prior(labels: torch.Tensor) -> torch.Tensor:
    """Per-channel foreground fraction of binary ``(B, C, H, W)`` masks, kept away from 0 and 1."""
    return labels.float().mean(dim=(0, *range(2, labels.dim()))).clamp(*_PRIOR_RANGE)


def _logit_shift(logits: torch.Tensor, target: float, iterations: int = 60) -> float:
    """The shift ``d`` with ``mean(sigmoid(logits + d)) == target``, by bisection (the mean is monotone in ``d``)."""
    low, high = -30.0, 30.0
    for _ in range(iterations):
        middle = (low + high) / 2
        if torch.sigmoid(logits + middle).mean().item() < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _softmax_shift(logits: torch.Tensor, prior: torch.Tensor, iterations: int = 50) -> torch.Tensor:
    """Shifts ``d`` (one per channel) with the mean of ``softmax(logits + d)`` over pixels equal to ``prior``, by the
    fixed point ``d += log(prior / mean)`` (each step moves every channel's share towards its target)."""
    shift = torch.zeros(logits.shape[1], device=logits.device)
    for _ in range(iterations):
        mean = torch.softmax(logits + shift[None, :, None, None], dim=1).mean(dim=(0, 2, 3))
        shift += torch.log(prior / mean.clamp_min(1e-12))
    return shift - shift.mean()


def init_output_bias(
    network: nn.Module,
    samples: Sequence[Mapping[str, torch.Tensor]],
    num_samples: int = 16,
    image_key: str = "image",
    label_key: str = "label",
    device: str | torch.device | None = None,
    enabled: bool | str = True,
) -> list[float] | None:
    """Shift the output convolution's bias so that the mean sigmoid probability equals the training foreground prior.

    The network is measured in training mode, as the first optimizer steps see it; its normalisation statistics are
    restored afterwards, so only the output bias changes.

    Args:
        network: the untrained network (returns logits, one channel per foreground class).
        samples: training items (a dataset), each with ``image`` ``(C, H, W)`` and a binary ``label`` ``(K, H, W)``.
        num_samples: how many of the first items to measure on. Default 16.
        image_key: key of the image in each item.
        label_key: key of the mask in each item.
        device: move the network there first (where the samples are); default: leave it where it is.
        enabled: ``False`` leaves the network as it is (a bool, or the ``--output_bias`` setting as typed:
            :func:`pipeline.bundle.flag`).

    Returns:
        The prior of each output channel; ``None`` when not ``enabled``.

    Raises:
        ValueError: when ``samples`` is empty, or the network has no output convolution with a bias.
    """
    if not flag(enabled, "output_bias"):
        return None
    if device is not None:
        network.to(device)
    count = min(num_samples, len(samples))
    if count < 1:
        raise ValueError("init_output_bias needs at least one training sample.")
    items = [samples[i] for i in range(count)]
    device = next(network.parameters()).device
    images = torch.stack([torch.as_tensor(item[image_key]) for item in items]).float().to(device)
    labels = torch.stack([torch.as_tensor(item[label_key]) for item in items])
    prior = foreground_prior(labels)
    buffers = {name: buffer.clone() for name, buffer in network.named_buffers()}
    mode = network.training
    network.train()
    try:
        conv, logits = output_convolution(network, images)
    finally:
        network.train(mode)
        with torch.no_grad():
            for name, buffer in network.named_buffers():
                buffer.copy_(buffers[name])
    if logits.shape[1] != prior.numel():
        raise ValueError(f"the network has {logits.shape[1]} output channels but the masks have {prior.numel()}.")
    with torch.no_grad():
        if logits.shape[1] == 1:
            conv.bias[0] += _logit_shift(logits[:, 0].float(), float(prior[0]))
        else:
            prior = prior / prior.sum()  # the softmax's shares sum to one
            conv.bias.add_(_softmax_shift(logits.float(), prior.to(logits.device)).to(conv.bias.dtype))
    logger.info("output bias set for a foreground prior of %s", ", ".join(f"{p:.3f}" for p in prior.tolist()))
    return prior.tolist()
