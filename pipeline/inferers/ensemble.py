"""Ensembles of checkpoints (cross-validation folds, cosine-annealing snapshots) and flip test-time augmentation.

``EnsembleInferer`` wraps any MONAI inferer. It runs every network on the input and, with ``flip_tta``, on its
horizontal and vertical mirror images, maps each output back, converts it to a probability and averages the
probabilities (not thresholded masks). It returns the logit of that mean, so the postprocessing a bundle already
applies (sigmoid, ``Invertd``, threshold) stays as it is.
"""

from __future__ import annotations

import copy
import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.inferers import Inferer
from torch import nn

from pipeline.networks import load_state_dict_file

__all__ = ["EnsembleInferer", "expand_checkpoints", "load_ensemble", "weights_names"]

#: Spatial flips of a (B, C, H, W) batch used by flip test-time augmentation: none, left-right, up-down.
FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,))
_EPS = 1e-6


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
    network: nn.Module, checkpoints: Sequence[str | os.PathLike], device: str | torch.device = "cpu"
) -> list[nn.Module]:
    """One copy of ``network`` per weights file, each loaded with ``load_state_dict_file`` (``weights_only``).

    Args:
        network: the architecture (its own weights are not used).
        checkpoints: weights files, e.g. the ``model.pt`` of each fold; an entry with ``*`` or ``?`` is a glob
            pattern, e.g. ``outputs/inception_unet/latest/models/snapshot_*.pt`` for every cosine-annealing snapshot.
            A TorchScript (``.ts``) or ONNX (``.onnx``) export runs as it is (:class:`pipeline.export.ExportedNetwork`).
        device: where the copies go.

    Returns:
        The loaded networks in ``checkpoints`` order (a pattern's matches sorted by name), in eval mode.

    Raises:
        ValueError: no checkpoint, a pattern that matches nothing, or a file that does not fit the network (the
            message names the file).
    """
    from pipeline.export import FORMATS, ExportedNetwork

    paths = expand_checkpoints(checkpoints)
    if not paths:
        raise ValueError("load_ensemble needs at least one weights file")
    exported = tuple(FORMATS.values())
    return [
        ExportedNetwork(path, device).eval()
        if path.endswith(exported)
        else load_state_dict_file(copy.deepcopy(network), path).to(device).eval()
        for path in paths
    ]


class EnsembleInferer(Inferer):
    """Average the sigmoid probabilities of several networks and flipped inputs; return the mean as a logit.

    Args:
        inferer: the inferer that runs one network on one input (e.g. ``SlidingWindowInferer``).
        networks: the ensemble members; ``None`` uses the network passed at call time only.
        flip_tta: also run each network on the left-right and up-down mirrored input.

    Example::

        inferer = EnsembleInferer(SlidingWindowInferer(roi_size=(256, 256)), load_ensemble(net, folds), flip_tta=True)
        logits = inferer(images, network=None)  # (B, 1, H, W)
    """

    def __init__(self, inferer: Inferer, networks: Sequence[nn.Module] | None = None, flip_tta: bool = False) -> None:
        super().__init__()
        self.inferer = inferer
        self.networks = list(networks) if networks else None
        self.flips = FLIPS if flip_tta else FLIPS[:1]

    def __call__(
        self, inputs: torch.Tensor, network: nn.Module | None = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Run the ensemble on a (B, C, H, W) batch.

        Args:
            inputs: the preprocessed batch.
            network: used when the inferer has no networks of its own.

        Returns:
            (B, out_channels, H, W) logits of the averaged probability; a single network without flips returns its
            own logits unchanged.
        """
        networks = self.networks or [network]
        if networks[0] is None:
            raise ValueError("EnsembleInferer has no network: pass networks or a network at call time")
        if len(networks) == 1 and len(self.flips) == 1:
            return self.inferer(inputs, networks[0], *args, **kwargs)
        total = None
        for net in networks:
            for dims in self.flips:
                flipped = torch.flip(inputs, dims) if dims else inputs
                logits = self.inferer(flipped, net, *args, **kwargs)
                probability = torch.sigmoid((torch.flip(logits, dims) if dims else logits).float())
                total = probability if total is None else total + probability
        mean = total / (len(networks) * len(self.flips))
        return torch.logit(mean.clamp(_EPS, 1.0 - _EPS))
