"""Argument and input checks shared by the networks, and loading a local state dict file."""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["check_input_size", "check_spatial_dims", "load_state_dict_file", "place", "probe_input_size"]

# Keys under which training loops commonly nest the network's weights in a checkpoint.
_WRAPPER_KEYS = ("state_dict", "model", "network")
# How many offending keys an error message lists before it summarises the rest.
_MAX_LISTED = 8


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


def _unwrap(obj: object, path: str) -> Mapping[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict.")
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            return inner
    return obj


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def load_state_dict_file(net: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights from a local file into ``net``, strictly, without unpickling arbitrary objects.

    The file is read with ``torch.load(path, map_location="cpu", weights_only=True)``. It may hold a plain
    state dict or a checkpoint dict that nests one under ``"state_dict"``, ``"model"`` or ``"network"``
    (the first of these that is a dict is used).

    Args:
        net: the network to fill; its parameters are copied in place.
        path: a local file written by ``torch.save(net.state_dict(), path)`` or a checkpoint as above.

    Returns:
        ``net`` itself, so that a bundle config can write ``$load_state_dict_file(@network_def, path)``.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: naming the file, when it cannot be read as weights only (a pickled object, a truncated
            or foreign file), holds no state dict, its keys or tensor shapes do not match ``net``, or a weight is NaN
            or infinite.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No weights file at {path}. Train the model first, or name its weights with --checkpoint."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path} is not a plain weights file (refusing to unpickle arbitrary objects): {e}") from e
    except OSError:
        raise  # permissions, I/O errors: the OS message already names the file
    except Exception as e:
        # Foreign or truncated bytes fail in many ways (RuntimeError, EOFError, KeyError from a stray opcode, ...).
        raise ValueError(f"{path} could not be read as a torch weights file ({type(e).__name__}: {e})") from e
    state = _unwrap(obj, path)

    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = []
    for key, value in state.items():
        if key in expected:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            if found != tuple(expected[key].shape):
                wrong_shape.append(f"{key} {found} vs {tuple(expected[key].shape)}")
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatch (file vs {type(net).__name__}): {_listed(wrong_shape)}")
    if problems:
        raise ValueError(f"{path} does not fit {type(net).__name__}; " + "; ".join(problems) + ".")
    broken = [
        k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point() and not v.isfinite().all()
    ]
    if broken:
        raise ValueError(
            f"{path} holds non-finite weights (NaN or infinity) in {len(broken)} of {len(state)} tensors "
            f"({_listed(broken)}): the training that wrote it diverged. Use an earlier checkpoint, or train again."
        )
    net.load_state_dict(state, strict=True)
    return net


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


def place(network: nn.Module, device: str | torch.device, channels_last: bool = False) -> nn.Module:
    """Move ``network`` to ``device``, in channels-last memory format when asked (faster convolutions on tensor cores).

    Returns:
        ``network`` itself (moved in place), so that a config can chain it.
    """
    if channels_last:
        return network.to(device=device, memory_format=torch.channels_last)
    return network.to(device)
