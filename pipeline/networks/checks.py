"""Argument and input checks shared by the networks, and the probe that finds an input size a network refuses."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["check_input_size", "check_spatial_dims", "probe_input_size"]


def check_spatial_dims(spatial_dims: int, owner: str) -> None:
    """Reject anything but 2D: every network and block in this package is 2D only.

    Args:
        spatial_dims: the value the caller passed.
        owner: class name used in the message.

    Raises:
        ValueError: when ``spatial_dims`` is not 2.
    """
    if spatial_dims != 2:
        raise ValueError(f"{owner} is 2D only: spatial_dims must be 2; got {spatial_dims!r}.")


def _shape_text(x: torch.Tensor) -> str:
    # Written out by hand (not tuple(x.shape)) so that TorchScript can compile the checks.
    return "(" + ", ".join([str(s) for s in x.shape]) + ")"


def check_input_size(x: torch.Tensor, owner: str, in_channels: int, multiple: int, minimum: int = 0) -> None:
    """Check a ``(B, C, H, W)`` input before any layer runs, so that a bad size fails with a useful message.

    Args:
        x: the network's input.
        owner: class name used in the message.
        in_channels: the channel count the network was built for.
        multiple: H and W must be multiples of this (``2 ** number_of_downsamplings``).
        minimum: H and W must be at least this; 0 means no lower bound beyond ``multiple``.

    Raises:
        ValueError: when ``x`` is not 4D, has the wrong channel count, or H or W break the size rule.
    """
    if x.dim() != 4:
        raise ValueError(f"{owner} expects a (B, C, H, W) tensor; got shape {_shape_text(x)}.")
    if x.shape[1] != in_channels:
        raise ValueError(f"{owner} was built for {in_channels} input channel(s); got shape {_shape_text(x)}.")
    h = x.shape[2]
    w = x.shape[3]
    lower = max(minimum, multiple)
    if h % multiple != 0 or w % multiple != 0 or h < lower or w < lower:
        rule = f"multiples of {multiple}"
        if minimum > multiple:
            rule += f" and at least {minimum}"
        raise ValueError(f"{owner} needs H and W to be {rule}; got {_shape_text(x)}.")


def _fits(network: nn.Module, in_channels: int, size: Sequence[int]) -> torch.Tensor:
    parameter = next(network.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    with torch.no_grad():
        return network(torch.zeros(1, in_channels, *size, device=device))


def probe_input_size(network: nn.Module, spatial_size: Sequence[int], in_channels: int = 1) -> nn.Module:
    """Run ``network`` once on a zero image of ``spatial_size`` and refuse a size it cannot take.

    Encoder-decoders halve the image several times and join the halves again: a size that is not a multiple of the
    total stride fails deep inside the network with a message about tensor sizes. This finds it before a run starts
    and names the override to fix. The network runs in eval mode without gradients (nothing is updated).

    Args:
        network: the network (on its device).
        spatial_size: (height, width) it will see.
        in_channels: its input channels.

    Returns:
        ``network``, so a config can chain it.

    Raises:
        ValueError: the network fails on that size, or returns a map of another size; the message suggests the next
            multiple of 8, 16, 32 or 64 that works.
    """
    height, width = (int(v) for v in spatial_size)
    training = network.training
    network.eval()
    try:
        try:
            out = _fits(network, in_channels, (height, width))
            error = None if tuple(out.shape[-2:]) == (height, width) else f"it returns a {tuple(out.shape[-2:])} map"
        except (RuntimeError, ValueError) as e:  # torch's size mismatch, or our networks' own input check
            error = str(e).splitlines()[0].rstrip(".")
        if error is None:
            return network
        hint = ""
        for k in (8, 16, 32, 64):  # the smallest k whose multiples fit (two of them: one could fit by chance)
            size = (k * math.ceil(height / k), k * math.ceil(width / k))
            try:
                if all(
                    tuple(_fits(network, in_channels, s).shape[-2:]) == s for s in (size, (size[0] + k, size[1] + k))
                ):
                    hint = f' Use a multiple of {k}, e.g. --spatial_size "[{size[0]},{size[1]}]".'
                    break
            except (RuntimeError, ValueError):
                continue
        raise ValueError(
            f"{type(network).__name__} cannot take {height} x {width} inputs (--spatial_size): {error}.{hint}"
        )
    finally:
        network.train(training)
