"""Weights in one place: their file formats, loading them safely, checkpoint patterns and ensembles.

A weights file is a plain state dict (``model.pt``, loaded with ``weights_only=True``), or an export of one that runs
as it is: TorchScript (``model.ts``) or ONNX (``model.onnx``, with ``onnxruntime``). An ensemble is a list of such
files; an entry with ``*`` or ``?`` is a glob pattern (``snapshot_*.pt``). Reports name weights by file name only
(:func:`weights_names`), never by path.
"""

from __future__ import annotations

import copy
import glob
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import require_extra

__all__ = ["FORMATS", "ExportedNetwork", "expand_checkpoints", "load_ensemble", "load_state_dict_file", "weights_names"]

FORMATS = {"torchscript": ".ts", "onnx": ".onnx"}
"""Export formats and the suffix of their files."""
# Keys under which training loops commonly nest the network's weights in a checkpoint.
_WRAPPER_KEYS = ("state_dict", "model", "network")
# How many offending keys an error message lists before it summarises the rest.
_MAX_LISTED = 8


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
        # torch's message ends in advice to load with weights_only=False, which would run the code a pickle carries
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        found = f"found {found.group(1)}" if found else ""
        raise ValueError(
            f"{path} holds Python objects, not only tensors{f' ({found})' if found else ''}: it is refused, because "
            "loading it would run code it carries. Use a state dict (torch.save(model.state_dict(), path)) from a "
            "source you trust."
        ) from None
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
        hint = (
            " Weights without a model card (model.json) get the network of the bundle's defaults: its structures come "
            "from --dataset_dir (default: the demo's right lung, left lung and heart) or --labels, e.g. --labels "
            "\"{'1': 'lung'}\" for a model of one structure."
            if wrong_shape
            else ""
        )
        raise ValueError(f"{path} does not fit {type(net).__name__}; " + "; ".join(problems) + "." + hint)
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


def expand_checkpoints(checkpoints: Sequence[str | os.PathLike]) -> list[str]:
    """The weights files of an ensemble: each entry as it is, or, when it holds ``*`` or ``?``, its glob matches.

    Args:
        checkpoints: paths and patterns, e.g. ``["outputs/inception_unet/latest/models/snapshot_*.pt"]``.

    Returns:
        The paths, a pattern's matches sorted by name.

    Raises:
        ValueError: when a pattern matches no file.
    """
    paths: list[str] = []
    for entry in checkpoints:
        entry = os.fspath(entry)
        if any(c in entry for c in "*?"):
            matches = sorted(glob.glob(entry))
            if not matches:
                raise ValueError(f"checkpoint pattern {entry!r} matches no file")
            paths += matches
        else:
            paths.append(entry)
    return paths


def weights_names(weights: str | os.PathLike | Sequence[str | os.PathLike] | None) -> str | list[str] | None:
    """How reports name weights: the file name; where an ensemble's names repeat (``fold0/latest/models/model.pt``,
    ``fold1/...``), the fewest last path parts that tell the members apart, without the folders above them.

    Args:
        weights: one weights file, several, or ``None``.

    Returns:
        One name, a list of names (one per file), or ``None``.
    """
    if weights is None or isinstance(weights, (str, os.PathLike)):
        return Path(weights).name if weights else None
    paths = [Path(w) for w in weights]
    longest = max((len(p.parts) for p in paths), default=1)
    for k in range(1, longest + 1):
        names = ["/".join(p.parts[-k:]) for p in paths]
        if len(set(names)) == len(names):
            break
    return names[0] if len(names) == 1 else names


def load_ensemble(
    network: nn.Module,
    checkpoints: Sequence[str | os.PathLike],
    device: str | torch.device = "cpu",
    channels_last: bool = False,
) -> list[nn.Module]:
    """One copy of ``network`` per weights file, each loaded with ``load_state_dict_file`` (``weights_only``).

    Args:
        network: the architecture (its own weights are not used).
        checkpoints: weights files, e.g. the ``model.pt`` of each fold; an entry with ``*`` or ``?`` is a glob
            pattern, e.g. ``outputs/inception_unet/latest/models/snapshot_*.pt`` for every cosine-annealing snapshot.
            A TorchScript (``.ts``) or ONNX (``.onnx``) export runs as it is (:class:`ExportedNetwork`).
        device: where the copies go.
        channels_last: put the copies' weights in channels-last memory format (faster convolutions on a GPU and a
            CPU; the inputs can stay contiguous). Exports run as they are.

    Returns:
        The loaded networks in ``checkpoints`` order (a pattern's matches sorted by name), in eval mode.

    Raises:
        ValueError: no checkpoint, a pattern that matches nothing, or a file that does not fit the network (the
            message names the file).
    """
    paths = expand_checkpoints(checkpoints)
    if not paths:
        raise ValueError("load_ensemble needs at least one weights file")
    exported = tuple(FORMATS.values())
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    return [
        ExportedNetwork(path, device).eval()
        if path.endswith(exported)
        else load_state_dict_file(copy.deepcopy(network), path).to(device=device, memory_format=memory_format).eval()
        for path in paths
    ]


class ExportedNetwork(nn.Module):
    """A TorchScript (``.ts``) or ONNX (``.onnx``) export used like the network it came from: logits in, logits out.

    ONNX files run with ``onnxruntime`` (CUDA when the input is on a GPU and the provider is installed, else CPU);
    inputs are copied to and from the host as float32. An export runs in the precision it was exported in (float32):
    the inferers' bfloat16 autocast (``--amp``) is switched off around it, so that its masks are the export's own.

    Args:
        path: the exported file.
        device: where TorchScript modules are loaded.
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"No exported model at {self.path}.")
        self.kind = next((k for k, s in FORMATS.items() if self.path.name.endswith(s)), None)
        if self.kind == "torchscript":
            try:
                self.module = torch.jit.load(str(self.path), map_location=device)
            except RuntimeError as e:
                raise ValueError(f"{self.path} is not a TorchScript file ({str(e).splitlines()[0]})") from e
        elif self.kind == "onnx":
            onnxruntime = require_extra("onnxruntime", "export", f"running {self.path.name}")
            providers = [
                p
                for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                if p in onnxruntime.get_available_providers()
            ]
            try:
                self.session = onnxruntime.InferenceSession(str(self.path), providers=providers)
            except Exception as e:  # onnxruntime raises its own exception types for corrupt files
                raise ValueError(f"{self.path} is not a readable ONNX model ({type(e).__name__}: {e})") from e
            self.input_name = self.session.get_inputs()[0].name
        else:
            raise ValueError(f"{self.path}: an exported model ends in {' or '.join(FORMATS.values())}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) input -> (B, out_channels, H, W) logits, on the input's device."""
        if self.kind == "torchscript":
            with torch.autocast(x.device.type, enabled=False):
                return self.module(x.float())
        (logits,) = self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})
        return torch.from_numpy(logits).to(x.device)
